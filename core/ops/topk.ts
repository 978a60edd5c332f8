/**
 * Top-k indices along the last dim: the router's expert choice. Not
 * differentiable (the output is u32 indices); the MoE layer handles the
 * router gradient itself (straight-through over the chosen scores).
 * Kernel: `gpu/kernels/topk.ts`.
 */
import { topkKernel } from "../../gpu/kernels/topk.ts";
import { gpu } from "../../gpu/runtime.ts";
import { fmtShape, ShapeError } from "../errors.ts";
import { assertLive, empty, type Tensor } from "../tensor.ts";

/**
 * Indices of the `k` largest values of each row of `x` (last dim), in
 * descending order of value; equal values go to the lower index first, and
 * NaN ranks above every number.
 *
 * @param x (..., n) f32
 * @param k how many to keep, 1 ≤ k ≤ n
 * @returns (..., k) u32 indices into the last dim of x; no gradient
 *
 * @example
 * ```ts
 * const experts = topk(scores, 4); // (N, E) → (N, 4)
 * ```
 */
export function topk(x: Tensor, k: number): Tensor {
  assertLive("topk", x);
  const shape = fmtShape(x.shape);
  if (x.dtype !== "f32" || x.shape.length === 0) {
    throw new ShapeError(
      `topk: x must be an f32 tensor with at least one dim, got ${x.dtype} ${shape}`,
    );
  }
  const n = x.shape[x.shape.length - 1];
  if (!Number.isInteger(k) || k < 1 || k > n) {
    throw new ShapeError(
      `topk: k = ${k} is out of range for ${shape}: need an integer 1 <= k <= ${n}`,
    );
  }
  const out = empty([...x.shape.slice(0, -1), k], "u32"); // (..., k)
  topkKernel(gpu(), out.buffer, x.buffer, x.size / n, n, k);
  return out;
}
