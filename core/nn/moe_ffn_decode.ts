/**
 * The FFN for decode (a few tokens per call, e.g. one per sequence of a
 * generation batch), dense and MoE, as GEMVs over the weights in their
 * checkpoint layouts (kernels: `gpu/kernels/moe_decode.ts`).
 *
 *   dense  out[t] = act(h[t] · W1ᵀ + b1) · W2ᵀ + b2          (`ffnDecode`)
 *   MoE    scores = h · routerᵀ                              (N, E)
 *          sel    = topk(scores, k), ties to the lower index  (N, k)
 *          out[t] = Σ_{e ∈ sel[t]} act(h[t] · W1[e]ᵀ + b1[e]) · W2[e]ᵀ + b2
 *                                                             (`moeFfnDecode`)
 * with W1 = c_fc.weight [d_ff, C], W2 = c_proj.weight [C, d_ff], expert e
 * owning rows [e·s, (e+1)·s) of W1 and the same columns of W2 (s = d_ff / E),
 * experts summed with weight 1 and b2 added once: the semantics of `moeFfn`,
 * which groups tokens by expert and suits prefill; this path
 * suits decode, where each token's selected slices are read directly and
 * unselected experts' weights are never read, so the weight traffic is k/E
 * of dense.
 *
 * Each call is one dispatch, routed or not (two where the activations do
 * not fit workgroup memory): routing (scores and top-k) is fused into the
 * kernel, so the sparse path has no more dispatches than the dense one,
 * and nothing is read back (the selections stay on the GPU). k = E still
 * routes (every expert selected, summed in score order), like `moeFfn`
 * with all experts, and equals the dense FFN to rounding; it costs more
 * than `ffnDecode` (the routing, per-slot loops, and no weight sharing
 * across tokens), so callers that want the dense FFN call `ffnDecode`.
 *
 * FLOPs (2 per multiply-add): router 2·N·C·E + experts 4·N·k·s·C, as
 * `moeFfnFlops`; dense 4·N·C·d_ff.
 *
 * Inference only: no tape. With grad mode on and an input that requires a
 * gradient it throws a TensorError (run it under `noGrad()`).
 */
import {
  MOE_DECODE_MAX_EXPERTS,
  moeDecodeKernel,
  type MoeDecodeStrategy,
  type MoeDecodeWeights,
} from "../../gpu/kernels/moe_decode.ts";
import { MAX_WORKGROUPS_PER_DIM } from "../../gpu/util.ts";
import { gpu } from "../../gpu/runtime.ts";
import { ConfigError, fmtShape, ShapeError } from "../errors.ts";
import { empty, type Tensor } from "../tensor.ts";
import { checkExperts, checkFfnInputs } from "./ffn_checks.ts";
import type { MoeActivation, MoeWeights } from "./moe_ffn.ts";

export { MOE_DECODE_MAX_EXPERTS, type MoeDecodeStrategy } from "../../gpu/kernels/moe_decode.ts";

/** Options of `moeFfnDecode` and `ffnDecode`. */
export interface FfnDecodeOptions {
  /**
   * Force a kernel strategy (tests, benchmarks); default: the cost model's
   * pick (`moeDecodeStrategy`).
   */
  strategy?: MoeDecodeStrategy;
}

/** Most tokens of one decode call (one workgroup row per token). */
export const MOE_DECODE_MAX_TOKENS = MAX_WORKGROUPS_PER_DIM;

/** The dense FFN tensors (nanoGPT layouts); a `MoeWeights` is one too. */
export type FfnWeights = Pick<MoeWeights, "fcW" | "fcB" | "projW" | "projB">;

/** The kernel's view of the FFN tensors (router null: the dense FFN). */
function decodeWeights(w: FfnWeights, router: Tensor | null): MoeDecodeWeights {
  return {
    fcW: w.fcW.buffer,
    fcB: w.fcB?.buffer ?? null,
    projW: w.projW.buffer,
    projB: w.projB?.buffer ?? null,
    router: router?.buffer ?? null,
  };
}

/** The shared FFN checks, plus the decode kernels' token limit; returns [N, C, d_ff]. */
function checkFfn(
  op: string,
  h: Tensor,
  w: FfnWeights,
  activation: MoeActivation,
  extra: Tensor[],
): [number, number, number] {
  const [N, C, dff] = checkFfnInputs(op, h, w, activation, extra, "the decode FFN");
  if (N > MOE_DECODE_MAX_TOKENS) {
    throw new ShapeError(
      `${op}: input ${fmtShape(h.shape)} has ${N} tokens, over the decode limit ` +
        `${MOE_DECODE_MAX_TOKENS}: use moeFfn (or linear) for prefill`,
    );
  }
  return [N, C, dff];
}

/**
 * The dense FFN `linear → act → linear` of a few tokens, with the same
 * GEMV kernels as `moeFfnDecode` (the dense reference of the decode
 * benchmark). Inference only (see the module doc).
 *
 * @param h (N, C) or (B, T, C) f32 FFN input (the output of ln_2), N ≤ MOE_DECODE_MAX_TOKENS
 * @param w c_fc / c_proj weights and biases (a `MoeWeights` works too; its router is ignored)
 * @param activation "relu" (default) or "gelu"
 * @param opts kernel strategy override
 * @returns the FFN output, h's shape
 *
 * @example
 * ```ts
 * const y = noGrad(() => ffnDecode(x, { fcW, fcB, projW, projB }, "relu")); // (1, C)
 * ```
 */
export function ffnDecode(
  h: Tensor,
  w: FfnWeights,
  activation: MoeActivation = "relu",
  opts: FfnDecodeOptions = {},
): Tensor {
  const [N, C, dff] = checkFfn("ffnDecode", h, w, activation, []);
  const out = empty(h.shape); // (..., C)
  moeDecodeKernel(
    gpu(),
    out.buffer,
    h.buffer,
    decodeWeights(w, null),
    { N, C, dff, E: 1, k: 1 },
    activation,
    opts.strategy,
  );
  return out;
}

/**
 * The FFN of an MoE-fied layer for a few tokens, each running only its
 * top-k experts' slices of the weights (see the module doc). Inference
 * only: throws a TensorError if grad mode is on and an input requires a
 * gradient.
 *
 * @param h (N, C) or (B, T, C) f32 FFN input, N ≤ MOE_DECODE_MAX_TOKENS
 * @param w the layer's FFN tensors and router [E, C]
 * @param E experts (must divide d_ff and match the router's rows; ≤ MOE_DECODE_MAX_EXPERTS)
 * @param k experts per token, 1 ≤ k ≤ E (k = E equals the dense FFN to rounding)
 * @param activation "relu" (default) or "gelu"
 * @param opts kernel strategy override
 * @returns the FFN output, h's shape
 *
 * @example
 * ```ts
 * const y = noGrad(() => moeFfnDecode(x, { fcW, fcB, projW, projB, router }, 16, 4, "relu"));
 * ```
 */
export function moeFfnDecode(
  h: Tensor,
  w: MoeWeights,
  E: number,
  k: number,
  activation: MoeActivation = "relu",
  opts: FfnDecodeOptions = {},
): Tensor {
  const op = "moeFfnDecode";
  const [N, C, dff] = checkFfn(op, h, w, activation, [w.router]);
  if (E > MOE_DECODE_MAX_EXPERTS) {
    throw new ConfigError(`${op}: ${E} experts exceed the decode limit ${MOE_DECODE_MAX_EXPERTS}`);
  }
  checkExperts(op, w.router, E, k, C, dff);
  const out = empty(h.shape); // (..., C)
  moeDecodeKernel(
    gpu(),
    out.buffer,
    h.buffer,
    decodeWeights(w, w.router),
    { N, C, dff, E, k },
    activation,
    opts.strategy,
  );
  return out;
}
