/**
 * The MoE FFN, inference path: each token runs only the
 * k experts its router picks.
 *
 *   scores = h · routerᵀ                      (N, E)   router [E, C]
 *   sel    = topk(scores, k)                  (N, k)   ties to the lower expert
 *   out[t] = Σ_{e ∈ sel[t]} act(h[t] · W1[e]ᵀ + b1[e]) · W2[e]ᵀ  + b2
 *
 * with W1[e] = c_fc.weight rows [e·s, (e+1)·s), b1[e] the same entries of
 * c_fc.bias, W2[e] = c_proj.weight columns [e·s, (e+1)·s), s = d_ff / E,
 * expert outputs summed with weight 1 and c_proj.bias added once. With
 * k = E this is the dense FFN `linear → act → linear`.
 *
 * Steps (kernels: `gpu/kernels/moe.ts`): router scores (`linear`), top-k
 * (`topk`), the routing plan (a deterministic counting sort of the N·k
 * selections by expert: counts, padded offsets, grouped rows and their
 * inverse), then one dispatch per stage for all experts: pack the weights,
 * up-projection + bias + activation on each expert's rows (read from h
 * through the plan), down-projection, and a combine that sums each token's
 * k expert rows in slot order (no scatter, no atomics: the same result on
 * every run).
 *
 * FLOPs (2 per multiply-add), `moeFfnFlops`:
 *   router 2·N·C·E + up 2·N·k·s·C + down 2·N·k·s·C = 2·N·C·E + 4·N·k·s·C,
 * against the dense FFN's 4·N·C·d_ff = 4·N·E·s·C: the expert part is k/E
 * of dense. The kernels also run padding rows (at most E·7 in all, each
 * expert's row count rounded up to a tile of 8), the weight packs (2·d_ff·C
 * elements read) and the combine ((k + 1)·N·C reads).
 *
 * Gradients: none. This is an inference path (eval / generate / bench
 * --top-k) and records nothing on the tape; with grad mode on and an input
 * that requires a gradient it throws a TensorError rather than silently
 * cutting the graph, so callers run it under `noGrad()`. The sparse
 * training step reuses `moeRoute` and the plan's buffers for its
 * backward.
 */
import {
  type MatmulConfig,
  TEXTURE_MIN_MACS,
  textureDesignSupported,
} from "../../gpu/kernels/matmul.ts";
import { type MoeDesign, moeMaxRows, type MoePlanBuffers } from "../../gpu/kernels/moe.ts";
import { moeExpertsKernel } from "../../gpu/kernels/moe_experts.ts";
import { moePlanKernel } from "../../gpu/kernels/moe_plan.ts";
import { gpu } from "../../gpu/runtime.ts";
import { ConfigError, fmtShape, ShapeError } from "../errors.ts";
import { checkExperts, checkFfnInputs } from "./ffn_checks.ts";
import { linear } from "../ops/matmul.ts";
import { topk } from "../ops/topk.ts";
import { assertLive, empty, numel, type Tensor } from "../tensor.ts";

export { MOE_EMPTY_ROW, MOE_ROW_TILE, type MoeDesign } from "../../gpu/kernels/moe.ts";

/** The FFN tensors of one MoE-fied layer (nanoGPT layouts, neurons permuted into experts). */
export interface MoeWeights {
  /** c_fc.weight [d_ff, C]: expert e owns rows [e·s, (e+1)·s). */
  fcW: Tensor;
  /** c_fc.bias [d_ff], or null (bias: false). */
  fcB: Tensor | null;
  /** c_proj.weight [C, d_ff]: expert e owns columns [e·s, (e+1)·s). */
  projW: Tensor;
  /** c_proj.bias [C], or null. */
  projB: Tensor | null;
  /** router.weight [E, C]. */
  router: Tensor;
}

/** FFN activation (ReLU, GELU as an option). */
export type MoeActivation = "relu" | "gelu";

/** Options of `moeFfn`. */
export interface MoeFfnOptions {
  /**
   * Where the grouped operands live: "texture" (default where WGSL has
   * read-only storage textures) or "buffer". A texture that would pass the
   * device limit falls back to "buffer".
   */
  design?: MoeDesign;
}

/**
 * A token→expert routing plan, grouped by expert. Selection i = t·k + j is
 * slot j (j-th best score) of token t. The grouped layout puts expert e's
 * selections, by ascending token, in rows [offsets[e], offsets[e] +
 * counts[e]), its segment padded with empty rows to offsets[e + 1] (a
 * multiple of MOE_ROW_TILE).
 */
export interface MoeRouting {
  /** (N, E) f32 router scores. */
  scores: Tensor;
  /** (N, k) u32 chosen experts, best first. */
  experts: Tensor;
  /** (E) u32 selections per expert. */
  counts: Tensor;
  /** (E + 1) u32 padded segment starts; offsets[E] = rows in use. */
  offsets: Tensor;
  /** (pmax) u32 selection id of each grouped row, MOE_EMPTY_ROW for padding. */
  rows: Tensor;
  /** (N·k) u32 grouped row of each selection. */
  pos: Tensor;
  /** Tokens. */
  N: number;
  /** Experts. */
  E: number;
  /** Experts per token. */
  k: number;
  /** Length of `rows`: the bound N·k + E·(MOE_ROW_TILE − 1), tile-rounded. */
  pmax: number;
}

/** The buffers of a routing plan's grouping tensors, as the MoE kernels take them. */
export function routingPlan(
  r: Pick<MoeRouting, "counts" | "offsets" | "rows" | "pos">,
): MoePlanBuffers {
  return {
    counts: r.counts.buffer,
    offsets: r.offsets.buffer,
    rows: r.rows.buffer,
    pos: r.pos.buffer,
  };
}

/** Releases a routing plan's tensors. */
export function releaseRouting(r: MoeRouting): void {
  for (const t of [r.scores, r.experts, r.counts, r.offsets, r.rows, r.pos]) t.release();
}

/**
 * Matmul tile of the router scores (N, C)·(E, C)ᵀ: one invocation covers 8
 * tokens × 16 experts. The model's autotuned tile (8×16 per invocation but
 * 8×4 invocations, 128 columns per workgroup) wastes most of its work on
 * E = 16 columns; these tiles are several times faster there.
 */
function routerConfig(macs: number): MatmulConfig {
  return textureDesignSupported() && macs >= TEXTURE_MIN_MACS
    ? { design: "texture", tm: 8, tn: 16, wx: 1, wy: 16 }
    : { design: "register", tm: 8, tn: 16, wx: 1, wy: 8 };
}

function checkF32(op: string, what: string, t: Tensor): void {
  if (t.dtype !== "f32") {
    throw new ShapeError(`${op}: ${what} must be f32, got ${t.dtype} ${fmtShape(t.shape)}`);
  }
}

function checkRouting(op: string, h: Tensor, router: Tensor, k: number): [number, number, number] {
  checkF32(op, "input", h);
  checkF32(op, "router", router);
  if (h.shape.length < 2) {
    throw new ShapeError(`${op}: input ${fmtShape(h.shape)} must be (N, C) or (B, T, C)`);
  }
  const C = h.shape[h.shape.length - 1];
  if (router.shape.length !== 2 || router.shape[1] !== C || router.shape[0] < 1) {
    throw new ShapeError(
      `${op}: router ${fmtShape(router.shape)} must be [E, ${C}] for input ${fmtShape(h.shape)}`,
    );
  }
  const E = router.shape[0];
  if (!Number.isInteger(k) || k < 1 || k > E) {
    throw new ConfigError(
      `${op}: top-k ${k} is out of range for ${E} experts: need 1 <= k <= ${E}`,
    );
  }
  return [numel(h.shape.slice(0, -1)), C, E];
}

/**
 * Routes tokens to experts: scores, top-k and the grouped plan (one
 * dispatch for the plan, no read-back).
 *
 * @param h (N, C) or (B, T, C) f32 FFN input (the output of ln_2)
 * @param router [E, C] f32
 * @param k experts per token, 1 ≤ k ≤ E
 * @returns the plan; the caller releases it (`releaseRouting`) or lets a scope do it
 *
 * @example
 * ```ts
 * const r = moeRoute(h, router, 2);
 * const [counts, offsets] = await readAll([r.counts, r.offsets]);
 * ```
 */
export function moeRoute(h: Tensor, router: Tensor, k: number): MoeRouting {
  assertLive("moeRoute", h, router);
  const [N, C, E] = checkRouting("moeRoute", h, router, k);
  const h2 = h.view([N, C]);
  const scores = linear(h2, router, null, { kernel: routerConfig(N * C * E) }); // (N, E)
  h2.release();
  const experts = topk(scores, k); // (N, k)
  const pmax = moeMaxRows(N, E, k);
  const counts = empty([E], "u32");
  const offsets = empty([E + 1], "u32");
  const rows = empty([pmax], "u32");
  const pos = empty([N * k], "u32");
  moePlanKernel(gpu(), routingPlan({ counts, offsets, rows, pos }), experts.buffer, {
    nk: N * k,
    E,
    pmax,
  });
  return { scores, experts, counts, offsets, rows, pos, N, E, k, pmax };
}

/**
 * The FFN of an MoE-fied layer computing only each token's top-k experts
 * (see the module doc). Inference only: throws a TensorError if grad mode
 * is on and an input requires a gradient (run it under `noGrad()`).
 *
 * @param h (N, C) or (B, T, C) f32 FFN input
 * @param w the layer's FFN tensors and router
 * @param E experts (must divide d_ff and match the router's rows)
 * @param k experts per token, 1 ≤ k ≤ E (k = E is the dense FFN)
 * @param activation "relu" (default) or "gelu"
 * @returns the FFN output, h's shape
 *
 * @example
 * ```ts
 * const y = noGrad(() => moeFfn(m, { fcW, fcB, projW, projB, router }, 16, 4, "relu"));
 * ```
 */
export function moeFfn(
  h: Tensor,
  w: MoeWeights,
  E: number,
  k: number,
  activation: MoeActivation = "relu",
  opts: MoeFfnOptions = {},
): Tensor {
  const op = "moeFfn";
  const [N, C, dff] = checkFfnInputs(op, h, w, activation, [w.router], "the MoE FFN");
  checkExperts(op, w.router, E, k, C, dff);
  const out = empty(h.shape); // (..., C)
  if (N === 0) return out;
  const route = moeRoute(h, w.router, k);
  const weights = {
    fcW: w.fcW.buffer,
    fcB: w.fcB?.buffer ?? null,
    projW: w.projW.buffer,
    projB: w.projB?.buffer ?? null,
  };
  moeExpertsKernel(gpu(), out.buffer, { x: h.buffer, plan: routingPlan(route), w: weights }, {
    design: opts.design ?? (textureDesignSupported() ? "texture" : "buffer"),
    sz: { N, C, dff, E, k },
    activation,
  });
  releaseRouting(route);
  return out;
}

/**
 * FLOPs (2 per multiply-add) of `moeFfn` on N tokens: router 2·N·C·E plus
 * the selected experts' up and down projections 4·N·k·(d_ff/E)·C. The
 * dense FFN's is 4·N·C·d_ff (k = E without the router).
 */
export function moeFfnFlops(N: number, C: number, dff: number, E: number, k: number): number {
  return 2 * N * C * E + 4 * N * k * (dff / E) * C;
}
