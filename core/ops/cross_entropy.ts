/**
 * Fused cross-entropy: mean over tokens of `logsumexp(row) − row[target]`,
 * the language-model loss. Equal to log-softmax followed by the mean
 * negative log-likelihood (the test checks it against that composed path),
 * in one row pass; the forward saves each row's logsumexp, and the backward
 * is `(softmax − onehot) · dLoss / N`. Kernels: `gpu/kernels/cross_entropy.ts`.
 *
 * Targets live on the GPU, so a target ≥ V is not caught here: it turns the
 * loss (and its row's gradient) into NaN.
 */
import { crossEntropyBackward, crossEntropyForward } from "../../gpu/kernels/cross_entropy.ts";
import { gpu } from "../../gpu/runtime.ts";
import { fmtShape, ShapeError } from "../errors.ts";
import { record } from "../tape.ts";
import { assertLive, empty, type Tensor } from "../tensor.ts";

function checkInputs(logits: Tensor, targets: Tensor): [number, number] {
  assertLive("crossEntropy", logits, targets);
  const ls = fmtShape(logits.shape);
  const ts = fmtShape(targets.shape);
  if (logits.dtype !== "f32" || (logits.shape.length !== 2 && logits.shape.length !== 3)) {
    throw new ShapeError(
      `crossEntropy: logits must be f32 (N, V) or (B, T, V), got ${logits.dtype} ${ls}`,
    );
  }
  if (targets.dtype !== "u32") {
    throw new ShapeError(`crossEntropy: targets must be u32, got ${targets.dtype} ${ts}`);
  }
  const lead = logits.shape.slice(0, -1);
  if (targets.shape.length !== lead.length || targets.shape.some((d, i) => d !== lead[i])) {
    throw new ShapeError(
      `crossEntropy: targets ${ts} do not match logits ${ls}: need one target per row, ` +
        `shape ${fmtShape(lead)}`,
    );
  }
  const V = logits.shape[logits.shape.length - 1];
  const N = targets.size;
  if (N === 0 || V === 0) {
    throw new ShapeError(`crossEntropy: logits ${ls} have no rows or an empty vocabulary`);
  }
  return [N, V];
}

/**
 * Mean cross-entropy of `logits` against `targets`.
 *
 * @param logits (N, V) or (B, T, V) f32
 * @param targets (N) or (B, T) u32, the logits' shape without its last dim
 * @returns the scalar loss (shape `[]`), differentiable with respect to logits
 *
 * @example
 * ```ts
 * const loss = crossEntropy(logits, targets); // (B, T, V), (B, T) → []
 * console.log(await loss.item());
 * ```
 */
export function crossEntropy(logits: Tensor, targets: Tensor): Tensor {
  const [N, V] = checkInputs(logits, targets);
  const g = gpu();
  const lse = empty([N]); // (N)
  const loss = empty([]); // scalar
  crossEntropyForward(g, loss.buffer, lse.buffer, logits.buffer, targets.buffer, N, V);
  const out = record("crossEntropy", [logits, targets], loss, (dLoss, needs) => {
    if (!needs[0]) {
      lse.release();
      return [null, null];
    }
    const dLogits = empty(logits.shape); // (..., V)
    crossEntropyBackward(
      g,
      dLogits.buffer,
      dLoss.buffer,
      logits.buffer,
      targets.buffer,
      lse.buffer,
      N,
      V,
    );
    lse.release();
    return [dLogits, null];
  });
  if (!out.requiresGrad) lse.release();
  return out;
}
