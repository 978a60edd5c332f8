/**
 * Global-norm gradient clipping without a host read-back.
 *
 * `gradClip` records the sum of squares of every parameter's gradient and
 * the clip factor min(1, maxNorm / (norm + 1e-6)) on the GPU, as
 * torch.nn.utils.clip_grad_norm_ does. The gradients themselves are left
 * unchanged (tensors are immutable); the factor goes to `AdamW.step`, whose
 * kernel multiplies each gradient by it. The norm (before clipping) is read
 * later, together with the loss, in the step's one host wait.
 */
import {
  gradNormFinalKernel,
  gradNormGroups,
  sumSquaresPartialKernel,
} from "../../gpu/kernels/grad_norm.ts";
import { gpu } from "../../gpu/runtime.ts";
import { ConfigError, fmtShape, ShapeError } from "../errors.ts";
import { assertLive, empty, type Tensor } from "../tensor.ts";

/** Result of `gradClip`: two one-element f32 tensors, filled when the GPU runs. */
export interface GradClip {
  /** Global L2 norm of all gradients, before clipping. */
  norm: Tensor;
  /** min(1, maxNorm / (norm + 1e-6)): multiply gradients by it (AdamW does). */
  factor: Tensor;
}

/**
 * Records the global gradient norm of `params` and the clip factor for
 * `maxNorm` (pass `Infinity` to get the norm with a factor of 1).
 * Parameters without a gradient are skipped, as in torch.
 */
export function gradClip(params: readonly Tensor[], maxNorm: number): GradClip {
  if (!(maxNorm > 0)) {
    throw new ConfigError(`gradClip: maxNorm must be positive, got ${maxNorm}`);
  }
  const grads: Tensor[] = [];
  for (const p of params) {
    if (!p.grad) continue;
    assertLive("gradClip", p.grad);
    if (p.grad.size !== p.size) {
      throw new ShapeError(
        `gradClip: gradient ${fmtShape(p.grad.shape)} does not match ${p.name} ${
          fmtShape(p.shape)
        }`,
      );
    }
    grads.push(p.grad);
  }
  const g = gpu();
  let slots = 0;
  for (const t of grads) slots += gradNormGroups(t.size);
  const partials = g.pool.acquire(Math.max(slots, 1) * 4, "grad_norm partials");
  let base = 0;
  for (const t of grads) base += sumSquaresPartialKernel(g, partials, base, t.buffer, t.size);
  const norm = empty([1]);
  const factor = empty([1]);
  gradNormFinalKernel(g, norm.buffer, factor.buffer, partials, slots, maxNorm);
  // Safe to pool now: any later writer of this buffer is recorded after the final pass.
  g.pool.release(partials);
  return { norm, factor };
}

/** Records the global L2 norm of the gradients of `params` (a one-element tensor). */
export function gradNorm(params: readonly Tensor[]): Tensor {
  const { norm, factor } = gradClip(params, Infinity);
  factor.release();
  return norm;
}
