/**
 * The MoE FFN for training (the sparse phase): forward and backward compute
 * only each token's top-k experts, recorded on the tape.
 *
 * Forward (as `moeFfn`, whose routing plan and grouped kernels it reuses):
 *   scores = h · routerᵀ (N, E);  sel = topk(scores, k) (N, k), ties to the
 *   lower expert;  for each selection (t, j) with e = sel[t, j]:
 *   pre = h[t] · W1[e]ᵀ + b1[e],  act = f(pre),  y_e(t) = act · W2[e]ᵀ;
 *   out[t] = b2 + Σ_j y_{sel[t,j]}(t)   (weight 1, summed in slot order)
 * with W1[e] = c_fc.weight rows [e·s, (e+1)·s), b1[e] the same c_fc.bias
 * entries, W2[e] = c_proj.weight columns [e·s, (e+1)·s), s = d_ff / E. At
 * k = E this is exactly the dense FFN. The grouped pre-activations
 * (GELU only; for ReLU f'(pre) is read from act > 0) and activations are
 * kept in this op's own tensors for the backward (the inference path's
 * scratch textures are reused by the next call), so this path keeps act
 * (and y, a temporary) in buffers; the packed weights, which every row tile
 * reads and which are consumed right after their pack, go to scratch
 * textures where the adapter has read-only storage textures (the "hybrid"
 * design: texel loads are cheaper than buffer vec4 loads on CPU adapters).
 *
 * Backward, grouped by expert like the forward (one dispatch per stage for
 * all experts, each expert's rows in a fixed order: deterministic, no
 * atomics). With G = dOut (N, C) and dY_e rows = G[t] of e's tokens:
 *   dAct_e  = dY_e · W2[e]                 (up kernel, packed W2, identity)
 *   dPre_e  = dAct_e ⊙ f'(pre_e),  gdot_e = rows of act_e · dAct_e
 *   dW2[:, e-slice] = dY_eᵀ · act_e        (outer: Σ over e's rows)
 *   dW1[e-slice]    = dPre_eᵀ · X_e,  db1[e-slice] = column sums of dPre_e
 *   dh[t]   = Σ_j (dPre · W1[e_j])(t, j)   (down kernel + combine, slot order)
 *           + Σ_j dS[t, e_j] · router[e_j] (the router term below)
 *   db2     = Σ_t G[t]
 * An expert that received no token gets exactly 0 in its slices of dW1,
 * db1 and dW2 (the kernels write every element; the sum over no rows is 0)
 * and in its router row (dS[t, e] is 0 wherever e is not selected).
 *
 * Router gradient, straight-through. The forward weighs every
 * selected expert by 1, which has no gradient with respect to the scores;
 * the backward instead differentiates the "virtual" output
 *   ỹ(t) = Σ_j p_j · y_{e_j}(t),  p = softmax(s),  s_j = scores[t, e_j]
 * (the softmax over the token's k selected scores only; the selection
 * itself is treated as constant). With g_j = G[t] · y_{e_j}(t) (dot
 * product over C, y without b2; computed as act · dAct of the selection's
 * grouped row, the same sum over s values: gdot above):
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
 * elementwise pass; backward 2 weight packs (plain copies into textures
 * where `moePackIsCopy`), the up / down grouped products and 2 outer
 * products (N·k·s·C multiply-adds each), the row pass (dPre and gdot,
 * N·k·s), the router gradient (N·k) and two N·E·C matmuls: ~2x the
 * forward's expert FLOPs, as for dense, so the step's FFN FLOPs are k/E of
 * dense plus the router. Memory kept from forward to backward: the plan
 * plus 1 (2 for GELU) grouped operands of pmax·sp floats.
 */
import { matmulConfig } from "../../gpu/autotune.ts";
import { activationForward } from "../../gpu/kernels/activation.ts";
import {
  type MatmulConfig,
  matmulKernel,
  textureDesignSupported,
} from "../../gpu/kernels/matmul.ts";
import {
  type Fold,
  type MoeDesign,
  moeDesign,
  type MoeFolds,
  type MoeOperand,
  type MoePlanBuffers,
  type MoeSizes,
  type MoeStore,
  weightStore,
} from "../../gpu/kernels/moe.ts";
import {
  moeDactKernel,
  type MoeOuterDesign,
  moeOuterDesign,
  moeOuterKernel,
  moeRouterGradKernel,
} from "../../gpu/kernels/moe_backward.ts";
import { moeCombineKernel } from "../../gpu/kernels/moe_combine.ts";
import { moeDownKernel, moeUpKernel } from "../../gpu/kernels/moe_grouped.ts";
import { moePackKernel } from "../../gpu/kernels/moe_pack.ts";
import { sumRowsKernel } from "../../gpu/kernels/reduce.ts";
import { type Gpu, gpu } from "../../gpu/runtime.ts";
import { scratchTexture } from "../../gpu/scratch.ts";
import { ceilDiv } from "../../gpu/util.ts";
import { isGradEnabled, record } from "../tape.ts";
import { empty, type Tensor } from "../tensor.ts";
import { checkExperts, checkFfnInputs } from "./ffn_checks.ts";
import {
  type MoeActivation,
  moeRoute,
  type MoeRouting,
  type MoeWeights,
  releaseRouting,
  routingPlan,
} from "./moe_ffn.ts";

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
  /**
   * Tile shape of the weight-gradient outer products (default: the
   * adapter's, `moeOuterDesign`); tests and benchmarks pick each.
   */
  outer?: MoeOuterDesign;
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
  const bias = [w.fcB, w.projB].filter((b): b is Tensor => b !== null);
  const inputs = [h, w.fcW, w.projW, w.router, ...bias];
  const [N, C, dff] = checkFfnInputs(OP, h, w, activation, [w.router], null);
  checkExperts(OP, w.router, E, k, C, dff);
  const out = empty(h.shape); // (..., C)
  if (N === 0) return out;
  const route = moeRoute(h, w.router, k);
  if (opts.onCounts) {
    const counts = empty([E], "u32");
    gpu().recorder.copy(route.counts.buffer, 0, counts.buffer, 0, E * 4);
    opts.onCounts(counts);
  }
  const saved: MoeTrainSaved = {
    ...moeFfnTrainForward(out, h, w, route, { N, C, dff, E, k }, activation),
    outer: opts.outer ?? moeOuterDesign(gpu()),
  };
  if (!(isGradEnabled() && inputs.some((t) => t.requiresGrad))) {
    releaseSaved(saved);
    return out;
  }
  const routerInputGrad = opts.routerInputGrad ?? true;
  return record(OP, inputs, out, (dOut, needs) => {
    const grads = moeFfnTrainBackward(dOut, needsOf(needs, w), saved, routerInputGrad);
    releaseSaved(saved);
    return gradsInOrder(grads, w);
  });
}

// ---- forward ---------------------------------------------------------------------

/** What the forward keeps for the backward. */
interface MoeTrainSaved {
  h: Tensor;
  w: MoeWeights;
  route: MoeRouting;
  plan: MoePlanBuffers;
  sz: MoeSizes;
  activation: MoeActivation;
  design: MoeDesign;
  folds: MoeFolds;
  /** Grouped activations (pmax, sp). */
  act: Tensor;
  /** Grouped pre-activations (pmax, sp): act itself for ReLU. */
  pre: Tensor;
  /** Tile shape of the backward's outer products. */
  outer: MoeOuterDesign;
}

/**
 * A packed-weight operand for `slot`: a scratch texture where the design
 * keeps weights in textures, else a pool buffer added to `temps`.
 */
function packedWeight(
  g: Gpu,
  store: MoeStore,
  slot: string,
  f: Fold,
  temps: GPUBuffer[],
): MoeOperand {
  if (store === "texture") return scratchTexture(g, "moe_train", slot, f.width, f.height);
  const b = g.pool.acquire(f.width * f.height * 16, `moe_train.${slot}`);
  temps.push(b);
  return b;
}

/**
 * Records out = the sparse FFN of h (see the module doc) and returns what
 * the backward needs: the grouped pre-activations and activations, in this
 * op's own tensors.
 */
function moeFfnTrainForward(
  out: Tensor,
  h: Tensor,
  w: MoeWeights,
  route: MoeRouting,
  sz: MoeSizes,
  activation: MoeActivation,
): Omit<MoeTrainSaved, "outer"> {
  const g = gpu();
  const pmax = route.pmax;
  const plan = routingPlan(route);
  const sp4 = ceilDiv(sz.dff / sz.E, 4);
  // Packed weights in textures where the adapter has them ("hybrid"); act and
  // pre in this op's own buffers, kept for the backward; y a pool temporary.
  const { design, folds } = moeDesign(g, sz, textureDesignSupported() ? "hybrid" : "buffer");
  const temps: GPUBuffer[] = [];
  const w1 = packedWeight(g, weightStore(design), "w1", folds.w1, temps);
  const w2 = packedWeight(g, weightStore(design), "w2", folds.w2, temps);
  const act = empty([pmax, sp4 * 4]); // grouped (pmax, sp)
  const pre = activation === "relu" ? act : empty([pmax, sp4 * 4]);
  const y = g.pool.acquire(pmax * ceilDiv(sz.C, 4) * 16, "moe_train.y"); // grouped (pmax, C4·4)
  temps.push(y);
  const grouped = { design, sz, pmax, folds };
  moePackKernel(g, w1, w.fcW.buffer, { source: "fc", layout: "up", sz });
  moePackKernel(g, w2, w.projW.buffer, { source: "proj", layout: "down", sz });
  const upInputs = { x: h.buffer, w: w1, bias: w.fcB?.buffer ?? null, plan };
  if (activation === "relu") {
    moeUpKernel(g, act.buffer, upInputs, { ...grouped, activation: "relu" });
  } else {
    moeUpKernel(g, pre.buffer, upInputs, { ...grouped, activation: "identity" });
    activationForward(g, activation, act.buffer, pre.buffer, pmax * sp4 * 4);
  }
  moeDownKernel(g, y, { act: act.buffer, w: w2, offsets: plan.offsets }, grouped);
  const projB = w.projB?.buffer ?? null;
  moeCombineKernel(g, out.buffer, { y, pos: plan.pos, bias: projB }, {
    design,
    sz,
    fold: folds.y,
  });
  for (const b of temps) g.pool.release(b);
  return { h, w, route, plan, sz, activation, design, folds, act, pre };
}

function releaseSaved(s: MoeTrainSaved): void {
  for (const t of new Set([s.act, s.pre])) t.release();
  releaseRouting(s.route);
}

// ---- backward --------------------------------------------------------------------

/** Which gradients the tape asks for. */
interface MoeTrainNeeds {
  h: boolean;
  fcW: boolean;
  fcB: boolean;
  projW: boolean;
  projB: boolean;
  router: boolean;
}

/** The gradients, named. */
type MoeTrainGrads = { [K in keyof MoeTrainNeeds]: Tensor | null };

// The tape's inputs are h, fcW, projW, router, then the biases present.
function needsOf(needs: boolean[], w: MoeWeights): MoeTrainNeeds {
  return {
    h: needs[0],
    fcW: needs[1],
    projW: needs[2],
    router: needs[3],
    fcB: w.fcB !== null && needs[4],
    projB: w.projB !== null && needs[w.fcB ? 5 : 4],
  };
}

function gradsInOrder(d: MoeTrainGrads, w: MoeWeights): (Tensor | null)[] {
  const bias = [w.fcB ? [d.fcB] : [], w.projB ? [d.projB] : []].flat();
  return [d.h, d.fcW, d.projW, d.router, ...bias];
}

/**
 * The backward of `moeFfnTrainForward`, grouped by expert like the forward
 * (see the module doc): returns the gradients `needs` asks for.
 */
function moeFfnTrainBackward(
  dOut: Tensor,
  needs: MoeTrainNeeds,
  s: MoeTrainSaved,
  routerInputGrad: boolean,
): MoeTrainGrads {
  const g = gpu();
  const { sz, plan } = s;
  const d: MoeTrainGrads = {
    h: null,
    fcW: null,
    fcB: null,
    projW: null,
    projB: null,
    router: null,
  };
  const temps: GPUBuffer[] = [];
  const routerNeeds = { h: needs.h && routerInputGrad, router: needs.router };
  if (needs.h || needs.fcW || needs.fcB || routerNeeds.h || routerNeeds.router) {
    const rows = expertRowGrads(g, dOut, s, temps);
    if (needs.h || needs.fcW || needs.fcB) expertInputGrads(g, d, rows.dPre, needs, s, temps);
    if (routerNeeds.h || routerNeeds.router) routerGrads(g, d, rows.gdot, routerNeeds, s, temps);
  }
  if (needs.projW) {
    d.projW = empty(s.w.projW.shape); // (C, d_ff)
    moeOuterKernel(g, { dW: d.projW.buffer, dBias: null }, {
      L: s.act.buffer,
      R: dOut.buffer,
      plan,
    }, { sz, strides: { eS: sz.dff / sz.E, iS: 1, jS: sz.dff }, design: s.outer });
  }
  if (needs.projB) {
    d.projB = empty([sz.C]);
    sumRowsKernel(g, d.projB.buffer, dOut.buffer, sz.N, sz.C);
  }
  for (const b of temps) g.pool.release(b);
  return d;
}

/**
 * Per grouped row: dAct (pmax, sp) = dOut[token] · W2[e], then dPre = dAct ⊙
 * f'(pre) (in place) and gdot (pmax) = act · dAct, which is dOut[token] · y
 * (the router's g, from s values instead of C).
 */
function expertRowGrads(
  g: Gpu,
  dOut: Tensor,
  s: MoeTrainSaved,
  temps: GPUBuffer[],
): { dPre: GPUBuffer; gdot: GPUBuffer } {
  const { sz, plan, design, folds, route } = s;
  const sp4 = ceilDiv(sz.dff / sz.E, 4);
  const w2up = packedWeight(g, weightStore(design), "w2up", folds.w1, temps);
  const dPre = g.pool.acquire(route.pmax * sp4 * 16, "moe_train.dpre");
  const gdot = g.pool.acquire(route.pmax * 4, "moe_train.gdot");
  temps.push(dPre, gdot);
  moePackKernel(g, w2up, s.w.projW.buffer, { source: "proj", layout: "up", sz });
  const dOutRows = { x: dOut.buffer, w: w2up, bias: null, plan };
  const grouped = { design, sz, pmax: route.pmax, folds, activation: "identity" as const };
  moeUpKernel(g, dPre, dOutRows, grouped);
  moeDactKernel(g, { grad: dPre, pre: s.pre.buffer, act: s.act.buffer, gdot }, {
    rows: route.pmax,
    sp4,
    activation: s.activation,
  });
  return { dPre, gdot };
}

/**
 * From dPre (pmax, sp): dW1, db1 (outer products with h) and dh (N, C) =
 * Σ_j (dPre · W1[e_j]) rows, slot order.
 */
function expertInputGrads(
  g: Gpu,
  d: MoeTrainGrads,
  dPre: GPUBuffer,
  needs: MoeTrainNeeds,
  s: MoeTrainSaved,
  temps: GPUBuffer[],
): void {
  const { sz, plan, design, folds, route } = s;
  const grouped = { design, sz, pmax: route.pmax, folds };
  if (needs.fcW || needs.fcB) {
    const dW1 = empty(s.w.fcW.shape); // (d_ff, C)
    const db1 = needs.fcB ? empty([sz.dff]) : null;
    moeOuterKernel(g, { dW: dW1.buffer, dBias: db1?.buffer ?? null }, {
      L: dPre,
      R: s.h.buffer,
      plan,
    }, { sz, strides: { eS: (sz.dff / sz.E) * sz.C, iS: sz.C, jS: 1 }, design: s.outer });
    if (needs.fcW) d.fcW = dW1;
    else dW1.release();
    d.fcB = db1;
  }
  if (!needs.h) return;
  const w1down = packedWeight(g, weightStore(design), "w1down", folds.w2, temps);
  const dXr = g.pool.acquire(route.pmax * ceilDiv(sz.C, 4) * 16, "moe_train.dxr");
  temps.push(dXr);
  moePackKernel(g, w1down, s.w.fcW.buffer, { source: "fc", layout: "down", sz });
  moeDownKernel(g, dXr, { act: dPre, w: w1down, offsets: plan.offsets }, grouped);
  d.h = empty(s.h.shape);
  moeCombineKernel(g, d.h.buffer, { y: dXr, pos: plan.pos, bias: null }, {
    design,
    sz,
    fold: folds.y,
  });
}

/**
 * The straight-through router gradient dS (N, E) (see the module doc), then
 * dh += dS · router and dRouter (E, C) = dSᵀ · h.
 */
function routerGrads(
  g: Gpu,
  d: MoeTrainGrads,
  gdot: GPUBuffer,
  needs: { h: boolean; router: boolean },
  s: MoeTrainSaved,
  temps: GPUBuffer[],
): void {
  const { N, E, C } = s.sz;
  const dS = g.pool.acquire(N * E * 4, "moe_train.ds"); // (N, E)
  temps.push(dS);
  moeRouterGradKernel(g, dS, {
    gdot,
    pos: s.plan.pos,
    sel: s.route.experts.buffer,
    scores: s.route.scores.buffer,
  }, s.sz);
  const [hConfig, routerConfig] = routerGradConfigs(g, N * E * C);
  const router = s.w.router;
  if (needs.h) {
    const shape = { m: N, k: E, n: C, accumulate: true };
    matmulKernel(g, d.h!.buffer, dS, router.buffer, null, shape, hConfig);
  }
  if (needs.router) {
    d.router = empty(router.shape); // (E, C) = dSᵀ · h
    const shape = { m: E, k: N, n: C, transA: true };
    matmulKernel(g, d.router.buffer, dS, s.h.buffer, null, shape, routerConfig);
  }
}

/**
 * Matmul tiles of dS · router (K = E) and dSᵀ · h (E × C outputs): where the
 * adapter's choice is the texture design (CPU adapters), buffer-fed
 * register tiles instead. These products are too short in K, or too small
 * in output, for the texture design's two operand packs to pay off
 * (measured on llvmpipe, C 128, E 16, both products: 0.73 ms against
 * 1.07 ms with the packs at N 512, 3.4 against 4.4 ms at N 4096).
 */
function routerGradConfigs(g: Gpu, macs: number): [MatmulConfig, MatmulConfig] {
  const config = matmulConfig(g, macs);
  if (config.design !== "texture") return [config, config];
  return [
    { design: "register", tm: 8, tn: 16, wx: 8, wy: 8 },
    { design: "register", tm: 4, tn: 4, wx: 16, wy: 4 },
  ];
}
