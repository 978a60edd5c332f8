/**
 * The MoE FFN for training (issue 5, SPEC 6's sparse phase): forward and
 * backward compute only each token's top-k experts, recorded on the tape.
 *
 * Forward (as `moeFfn`, whose routing plan and grouped kernels it reuses):
 *   scores = h · routerᵀ (N, E);  sel = topk(scores, k) (N, k), ties to the
 *   lower expert;  for each selection (t, j) with e = sel[t, j]:
 *   pre = h[t] · W1[e]ᵀ + b1[e],  act = f(pre),  y_e(t) = act · W2[e]ᵀ;
 *   out[t] = b2 + Σ_j y_{sel[t,j]}(t)   (weight 1, summed in slot order)
 * with W1[e] = c_fc.weight rows [e·s, (e+1)·s), b1[e] the same c_fc.bias
 * entries, W2[e] = c_proj.weight columns [e·s, (e+1)·s), s = d_ff / E. At
 * k = E this is exactly the dense FFN (SPEC 4). The grouped pre-activations
 * (GELU only; for ReLU f'(pre) is read from act > 0), activations and
 * expert outputs y are kept in this op's own tensors for the backward (the
 * inference path's scratch textures are reused by the next call), so this
 * path keeps act and y in buffers; the packed weights, which every row tile
 * reads and which are consumed right after their pack, go to scratch
 * textures where the adapter has read-only storage textures (the "hybrid"
 * design: texel loads cost ~0.9 ns against ~3 ns per buffer vec4 on
 * llvmpipe).
 *
 * Backward, grouped by expert like the forward (one dispatch per stage for
 * all experts, each expert's rows in a fixed order: deterministic, no
 * atomics). With G = dOut (N, C) and dY_e rows = G[t] of e's tokens:
 *   dAct_e  = dY_e · W2[e]                 (up kernel, packed W2, identity)
 *   dPre_e  = dAct_e ⊙ f'(pre_e)
 *   dW2[:, e-slice] = dY_eᵀ · act_e        (outer: Σ over e's rows)
 *   dW1[e-slice]    = dPre_eᵀ · X_e,  db1[e-slice] = column sums of dPre_e
 *   dh[t]   = Σ_j (dPre · W1[e_j])(t, j)   (down kernel + combine, slot order)
 *           + Σ_j dS[t, e_j] · router[e_j] (the router term below)
 *   db2     = Σ_t G[t]
 * An expert that received no token gets exactly 0 in its slices of dW1,
 * db1 and dW2 (the kernels write every element; the sum over no rows is 0)
 * and in its router row (dS[t, e] is 0 wherever e is not selected).
 *
 * Router gradient, straight-through (SPEC 6). The forward weighs every
 * selected expert by 1, which has no gradient with respect to the scores;
 * the backward instead differentiates the "virtual" output
 *   ỹ(t) = Σ_j p_j · y_{e_j}(t),  p = softmax(s),  s_j = scores[t, e_j]
 * (the softmax over the token's k selected scores only; the selection
 * itself is treated as constant). With g_j = G[t] · y_{e_j}(t) (dot
 * product over C, y without b2):
 *   dS[t, e_j] = ∂(G[t]·ỹ(t))/∂s_j = p_j (g_j − Σ_i p_i g_i),  dS[t, e] = 0
 *   for e not selected by t;
 *   dRouter = dSᵀ · h   (E, C),   dh += dS · router.
 * The values of y and G are the real forward's (weight 1); only the
 * dependence on the scores is borrowed from ỹ: that is the estimate. The
 * forward is untouched (at k = E still exactly the dense model), while the
 * router learns to raise the scores of experts whose output agrees with
 * −G. Consequences: at k = 1 p = (1) and the router gets no gradient; and
 * finite differences of the forward cannot check dRouter or the router's
 * share of dh (the real forward is piecewise constant in the router
 * weights), so the tests check them against a float64 reference of the
 * formula above instead.
 *
 * Costs: forward as `moeFfn` (buffer design) plus, for GELU, one
 * elementwise pass; backward 2 weight packs, the up / down grouped
 * products and 2 outer products (N·k·s·C multiply-adds each), the router
 * gradient (N·k·C) and two N·E·C matmuls: ~2x the forward's expert FLOPs,
 * as for dense, so the step's FFN FLOPs are k/E of dense plus the router.
 * Memory kept from forward to backward: the plan plus 2 (3 for GELU)
 * grouped operands of pmax·max(sp, C4·4) floats.
 */
import { matmulConfig } from "../../gpu/autotune.ts";
import { matmulKernel, textureDesignSupported } from "../../gpu/kernels/matmul.ts";
import {
  type Fold,
  moeCombineKernel,
  moeDesign,
  moeDownKernel,
  type MoeOperands,
  moePackWeightsKernel,
  type MoeSizes,
  moeUpKernel,
  weightStore,
} from "../../gpu/kernels/moe.ts";
import { scratchTexture } from "../../gpu/scratch.ts";
import {
  moeActKernel,
  moeDactKernel,
  moeOuterKernel,
  moePackBwKernel,
  moeRouterGradKernel,
} from "../../gpu/kernels/moe_backward.ts";
import { sumRowsKernel } from "../../gpu/kernels/reduce.ts";
import { gpu } from "../../gpu/runtime.ts";
import { ceilDiv } from "../../gpu/util.ts";
import { isGradEnabled, record } from "../tape.ts";
import { empty, type Tensor } from "../tensor.ts";
import { checkExperts, checkFfnInputs } from "./ffn_checks.ts";
import { type MoeActivation, moeRoute, type MoeWeights, releaseRouting } from "./moe_ffn.ts";

const OP = "moeFfnTrain";

/** Options of `moeFfnTrain`. */
export interface MoeFfnTrainOptions {
  /**
   * Add the router's straight-through term dS · router to h's gradient
   * (default true: the scores are h · routerᵀ). With false, the router
   * learns but h's gradient is the masked FFN's alone, which at k = E is
   * exactly the dense FFN's (the real forward does not depend on the
   * scores there).
   */
  routerInputGrad?: boolean;
  /**
   * Receives a copy of the tokens routed to each expert, (E) u32, owned by
   * the caller (in its scope): e.g. for AdamW's expert mask, which must leave
   * experts that received no token untouched.
   */
  onCounts?: (counts: Tensor) => void;
}

/**
 * The FFN of an MoE-fied layer for training: computes only each token's
 * top-k experts (weight 1) and records a backward that gives gradients for
 * h, c_fc.weight/bias, c_proj.weight/bias (selected experts only; exact
 * zeros for experts no token chose) and router.weight (straight-through,
 * see the module doc). k = E gives the dense FFN's output and gradients.
 *
 * @param h (N, C) or (B, T, C) f32 FFN input (the output of ln_2)
 * @param w the layer's FFN tensors and router (nanoGPT layouts, experts contiguous)
 * @param E experts (divides d_ff, matches the router's rows)
 * @param k experts per token, 1 ≤ k ≤ E
 * @param activation "relu" (default) or "gelu"
 * @param opts `routerInputGrad` (default true): see `MoeFfnTrainOptions`
 * @returns the FFN output, h's shape
 *
 * @example
 * ```ts
 * tidy(() => {
 *   const y = moeFfnTrain(m, { fcW, fcB, projW, projB, router }, 16, 4);
 *   backward(sum(y));
 * });
 * ```
 */
export function moeFfnTrain(
  h: Tensor,
  w: MoeWeights,
  E: number,
  k: number,
  activation: MoeActivation = "relu",
  opts: MoeFfnTrainOptions = {},
): Tensor {
  const routerInputGrad = opts.routerInputGrad ?? true;
  const bias = [w.fcB, w.projB].filter((b): b is Tensor => b !== null);
  const inputs = [h, w.fcW, w.projW, w.router, ...bias];
  const [N, C, dff] = checkFfnInputs(OP, h, w, activation, [w.router], null);
  checkExperts(OP, w.router, E, k, C, dff);
  const g = gpu();
  const out = empty(h.shape); // (..., C)
  if (N === 0) return out;
  const sz: MoeSizes = { N, C, dff, E, k };
  const sp4 = ceilDiv(dff / E, 4);
  const C4 = ceilDiv(C, 4);

  const route = moeRoute(h, w.router, k);
  if (opts.onCounts) {
    const counts = empty([E], "u32");
    g.recorder.copy(route.counts.buffer, 0, counts.buffer, 0, E * 4);
    opts.onCounts(counts);
  }
  const pmax = route.pmax;
  const plan = {
    counts: route.counts.buffer,
    offsets: route.offsets.buffer,
    rows: route.rows.buffer,
    pos: route.pos.buffer,
  };
  // Packed weights in textures where the adapter has them ("hybrid"); act, pre
  // and y in this op's own buffers, kept for the backward.
  const { design, folds } = moeDesign(g, sz, textureDesignSupported() ? "hybrid" : "buffer");
  const weights = weightStore(design);
  const packed: GPUBuffer[] = [];
  const weight = (slot: string, f: Fold): GPUBuffer | GPUTextureView => {
    if (weights === "texture") return scratchTexture(g, "moe_train", slot, f.width, f.height);
    const b = g.pool.acquire(f.width * f.height * 16, `moe_train.${slot}`);
    packed.push(b);
    return b;
  };
  const dummy = g.pool.acquire(16, "moe_train.nobias");
  const w1 = weight("w1", folds.w1);
  const w2 = weight("w2", folds.w2);
  const act = empty([pmax, sp4 * 4]); // grouped (pmax, sp)
  const pre = activation === "relu" ? act : empty([pmax, sp4 * 4]);
  const y = empty([pmax, C4 * 4]); // grouped (pmax, C4·4)
  const ops: MoeOperands = { w1, w2, act: pre.buffer, y: y.buffer, folds };
  moePackWeightsKernel(g, design, w1, w.fcW.buffer, "fc", sz, folds.w1);
  moePackWeightsKernel(g, design, w2, w.projW.buffer, "proj", sz, folds.w2);
  if (activation === "relu") {
    moeUpKernel(g, design, ops, h.buffer, w.fcB?.buffer ?? null, plan, dummy, sz, pmax, "relu");
  } else {
    moeUpKernel(
      g,
      design,
      ops,
      h.buffer,
      w.fcB?.buffer ?? null,
      plan,
      dummy,
      sz,
      pmax,
      "identity",
    );
    moeActKernel(g, act.buffer, pre.buffer, pmax * sp4, activation);
  }
  moeDownKernel(g, design, { ...ops, act: act.buffer }, plan.offsets, sz, pmax);
  moeCombineKernel(
    g,
    design,
    out.buffer,
    y.buffer,
    plan.pos,
    w.projB?.buffer ?? null,
    dummy,
    sz,
    folds.y,
  );
  for (const b of packed) g.pool.release(b);
  g.pool.release(dummy);

  const saved = [act, pre, y];
  const releaseSaved = () => {
    for (const t of saved) t.release();
    releaseRouting(route);
  };
  if (!(isGradEnabled() && inputs.some((t) => t.requiresGrad))) {
    releaseSaved();
    return out;
  }

  return record(OP, inputs, out, (dOut, needs) => {
    const [nh, nFcW, nProjW, nRouter] = needs;
    const nFcB = w.fcB !== null && needs[4];
    const nProjB = w.projB !== null && needs[w.fcB ? 5 : 4];
    const grads: (Tensor | null)[] = inputs.map(() => null);
    const temps: GPUBuffer[] = [];
    const temp = (bytes: number, label: string) => {
      const b = g.pool.acquire(bytes, label);
      temps.push(b);
      return b;
    };
    const bw = { rows: plan.rows, counts: plan.counts, offsets: plan.offsets };

    let dh: Tensor | null = null;
    if (nh || nFcW || nFcB) {
      // dPre (pmax, sp) = (dOut[token] · W2[e]) ⊙ f'(pre)
      const w2up = weights === "texture"
        ? scratchTexture(g, "moe_train", "w2up", folds.w1.width, folds.w1.height)
        : temp(folds.w1.width * folds.w1.height * 16, "moe_train.w2up");
      const dPre = temp(pmax * sp4 * 16, "moe_train.dpre");
      const dummy = temp(16, "moe_train.nobias");
      moePackBwKernel(g, w2up, w.projW.buffer, "projUp", sz);
      const dOps: MoeOperands = { ...ops, w1: w2up, act: dPre };
      moeUpKernel(g, design, dOps, dOut.buffer, null, plan, dummy, sz, pmax, "identity");
      moeDactKernel(g, dPre, pre.buffer, pmax * sp4, activation);
      if (nFcW || nFcB) {
        const dW1 = empty(w.fcW.shape); // (d_ff, C)
        const db1 = nFcB ? empty([dff]) : null;
        moeOuterKernel(g, dW1.buffer, db1?.buffer ?? null, dPre, h.buffer, bw, sz, {
          eS: (dff / E) * C,
          iS: C,
          jS: 1,
        });
        if (nFcW) grads[1] = dW1;
        else dW1.release();
        if (db1) grads[4] = db1;
      }
      if (nh) {
        // dh (N, C) = Σ_j (dPre · W1[e_j]) rows, slot order
        const w1down = weights === "texture"
          ? scratchTexture(g, "moe_train", "w1down", folds.w2.width, folds.w2.height)
          : temp(folds.w2.width * folds.w2.height * 16, "moe_train.w1down");
        const dXr = temp(pmax * C4 * 16, "moe_train.dxr");
        moePackBwKernel(g, w1down, w.fcW.buffer, "fcDown", sz);
        moeDownKernel(
          g,
          design,
          { ...ops, act: dPre, w2: w1down, y: dXr },
          plan.offsets,
          sz,
          pmax,
        );
        dh = empty(h.shape);
        moeCombineKernel(g, design, dh.buffer, dXr, plan.pos, null, dummy, sz, folds.y);
      }
    }
    if ((nh && routerInputGrad) || nRouter) {
      const dS = temp(N * E * 4, "moe_train.ds"); // (N, E)
      moeRouterGradKernel(
        g,
        dS,
        dOut.buffer,
        y.buffer,
        plan.pos,
        route.experts.buffer,
        route.scores.buffer,
        sz,
        C4 * 4,
      );
      const config = matmulConfig(g, N * E * C);
      if (nh && routerInputGrad) {
        matmulKernel(g, dh!.buffer, dS, w.router.buffer, null, {
          m: N,
          k: E,
          n: C,
          accumulate: true,
        }, config);
      }
      if (nRouter) {
        const dR = empty(w.router.shape); // (E, C) = dSᵀ · h
        matmulKernel(g, dR.buffer, dS, h.buffer, null, { m: E, k: N, n: C, transA: true }, config);
        grads[3] = dR;
      }
    }
    grads[0] = dh;
    if (nProjW) {
      const dW2 = empty(w.projW.shape); // (C, d_ff)
      moeOuterKernel(g, dW2.buffer, null, act.buffer, dOut.buffer, bw, sz, {
        eS: dff / E,
        iS: 1,
        jS: dff,
      });
      grads[2] = dW2;
    }
    if (nProjB) {
      const db2 = empty([C]);
      sumRowsKernel(g, db2.buffer, dOut.buffer, N, C);
      grads[w.fcB ? 5 : 4] = db2;
    }
    for (const b of temps) g.pool.release(b);
    releaseSaved();
    return grads;
  });
}
