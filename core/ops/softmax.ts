/**
 * Softmax over the last dim, numerically stable (the row max is subtracted
 * before exp). The backward rule reads the saved output y:
 * dx = y * (dy - sum_j dy_j * y_j).
 */
import { softmaxBackward, softmaxForward } from "../../gpu/kernels/softmax.ts";
import { gpu } from "../../gpu/runtime.ts";
import { fmtShape, ShapeError } from "../errors.ts";
import { record } from "../tape.ts";
import { assertLive, empty, type Tensor } from "../tensor.ts";

/** Softmax of `x` (..., C) over its last dim; same shape out. */
export function softmax(x: Tensor): Tensor {
  assertLive("softmax", x);
  if (x.dtype !== "f32") {
    throw new ShapeError(`softmax: needs an f32 tensor, got ${x.dtype} ${fmtShape(x.shape)}`);
  }
  if (x.shape.length === 0) {
    throw new ShapeError(`softmax: input ${fmtShape(x.shape)} has no last dim`);
  }
  const c = x.shape[x.shape.length - 1];
  const rows = c === 0 ? 0 : x.size / c;
  const y = empty(x.shape);
  softmaxForward(gpu(), y.buffer, x.buffer, { rows, c });
  return record("softmax", [x], y, (dOut) => {
    const dX = empty(x.shape);
    softmaxBackward(gpu(), dX.buffer, y.buffer, dOut.buffer, { rows, c });
    return [dX];
  });
}
