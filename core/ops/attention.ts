/**
 * Causal multi-head self-attention on the fused qkv projection (nanoGPT's
 * `CausalSelfAttention` between `c_attn` and `c_proj`):
 *
 *   qkv (B, T, 3C) → y (B, T, C),  y = merge_heads(softmax(mask(Q·Kᵀ/√hs)) · V)
 *
 * The forward saves the probabilities P (B, H, T, T) for the backward, which
 * releases them once used (a scope releases them otherwise). Kernels and
 * layouts: `gpu/kernels/attention.ts`.
 */
import {
  attentionBackward,
  type AttentionDims,
  attentionForward,
} from "../../gpu/kernels/attention.ts";
import { gpu } from "../../gpu/runtime.ts";
import { fmtShape, ShapeError } from "../errors.ts";
import { record } from "../tape.ts";
import { assertLive, empty, type Tensor } from "../tensor.ts";

function attentionDims(qkv: Tensor, nHead: number): AttentionDims {
  assertLive("attention", qkv);
  const shape = fmtShape(qkv.shape);
  if (qkv.dtype !== "f32") {
    throw new ShapeError(`attention: needs an f32 qkv, got ${qkv.dtype} ${shape}`);
  }
  if (qkv.shape.length !== 3 || qkv.shape[2] % 3 !== 0) {
    throw new ShapeError(
      `attention: qkv must be (B, T, 3C), got ${shape}: the last dim is not a multiple of 3`,
    );
  }
  if (!Number.isInteger(nHead) || nHead < 1) {
    throw new ShapeError(`attention: nHead must be a positive integer, got ${nHead} for ${shape}`);
  }
  const [B, T, C3] = qkv.shape;
  const C = C3 / 3;
  if (C % nHead !== 0) {
    throw new ShapeError(
      `attention: cannot split qkv ${shape} into ${nHead} heads: C = ${C} is not divisible by nHead`,
    );
  }
  return { B, T, C, H: nHead };
}

/**
 * Causal scaled-dot-product attention with `nHead` heads.
 *
 * @param qkv (B, T, 3C) f32: q, k, v side by side, head h in columns h·hs..(h+1)·hs of each
 * @param nHead number of heads; C must be a multiple of it
 * @returns y (B, T, C) with heads merged; differentiable with respect to qkv
 *
 * @example
 * ```ts
 * const y = attention(qkv, 4); // (B, T, 3C) → (B, T, C)
 * ```
 */
export function attention(qkv: Tensor, nHead: number): Tensor {
  const d = attentionDims(qkv, nHead);
  const g = gpu();
  const probs = empty([d.B, d.H, d.T, d.T]); // (B, H, T, T)
  const y = empty([d.B, d.T, d.C]); // (B, T, C)
  attentionForward(g, y.buffer, probs.buffer, qkv.buffer, d);
  const out = record("attention", [qkv], y, (dY) => {
    const dqkv = empty(qkv.shape); // (B, T, 3C)
    attentionBackward(g, dqkv.buffer, dY.buffer, qkv.buffer, probs.buffer, d);
    probs.release();
    return [dqkv];
  });
  if (!out.requiresGrad) probs.release();
  return out;
}
