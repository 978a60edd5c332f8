/**
 * LayerNorm over the last dim with a weight and a bias:
 * y = (x - mean) / sqrt(var + eps) * weight + bias, with the biased variance.
 *
 * The forward saves the per-row mean and rstd for the backward. They are
 * released when the backward rule has run, when no gradient is needed (at
 * once), or else at the end of the enclosing `tidy` scope.
 */
import { layernormBackward, layernormForward } from "../../gpu/kernels/layernorm.ts";
import { gpu } from "../../gpu/runtime.ts";
import { fmtShape, ShapeError } from "../errors.ts";
import { record } from "../tape.ts";
import { assertLive, empty, type Tensor, zeros } from "../tensor.ts";

/** Default epsilon added to the variance. */
export const LAYERNORM_EPS = 1e-5;

function checkArgs(x: Tensor, weight: Tensor, bias: Tensor): number {
  assertLive("layerNorm", x, weight, bias);
  for (const t of [x, weight, bias]) {
    if (t.dtype !== "f32") {
      throw new ShapeError(`layerNorm: needs f32 tensors, got ${t.dtype} ${fmtShape(t.shape)}`);
    }
  }
  if (x.shape.length === 0) {
    throw new ShapeError(`layerNorm: input ${fmtShape(x.shape)} has no last dim to normalise`);
  }
  const c = x.shape[x.shape.length - 1];
  for (const [what, t] of [["weight", weight], ["bias", bias]] as const) {
    if (t.shape.length !== 1 || t.shape[0] !== c) {
      throw new ShapeError(
        `layerNorm: ${what} ${fmtShape(t.shape)} does not match input ${fmtShape(x.shape)}: ` +
          `expected [${c}]`,
      );
    }
  }
  return c;
}

/** LayerNorm of `x` (..., C) over its last dim; `weight` and `bias` are (C). */
export function layerNorm(
  x: Tensor,
  weight: Tensor,
  bias: Tensor,
  eps = LAYERNORM_EPS,
): Tensor {
  const c = checkArgs(x, weight, bias);
  const rows = c === 0 ? 0 : x.size / c;
  const sizes = { rows, c };
  const y = empty(x.shape);
  const mean = empty([rows]); // (rows)
  const rstd = empty([rows]); // (rows)
  layernormForward(
    gpu(),
    y.buffer,
    mean.buffer,
    rstd.buffer,
    x.buffer,
    weight.buffer,
    bias.buffer,
    sizes,
    eps,
  );
  record("layerNorm", [x, weight, bias], y, (dOut, needs) => {
    const dX = needs[0] ? empty(x.shape) : null;
    // With no rows the kernels do nothing, and dW / dB must still be sums (0).
    const param = (need: boolean, t: Tensor) => need ? (rows === 0 ? zeros : empty)(t.shape) : null;
    const dW = param(needs[1], weight);
    const dB = param(needs[2], bias);
    layernormBackward(
      gpu(),
      dX?.buffer ?? null,
      dW?.buffer ?? null,
      dB?.buffer ?? null,
      x.buffer,
      weight.buffer,
      dOut.buffer,
      mean.buffer,
      rstd.buffer,
      sizes,
    );
    // The tape runs a node once, so the saved statistics are done with.
    mean.release();
    rstd.release();
    return [dX, dW, dB];
  });
  if (!y.requiresGrad) {
    mean.release();
    rstd.release();
  }
  return y;
}
