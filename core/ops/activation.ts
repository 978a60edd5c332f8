/**
 * ReLU and GELU (tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))),
 * elementwise over tensors of any shape.
 *
 * Both backward rules read the saved input x (not the output), so the caller
 * must keep x alive until backward has run, as for every op here.
 */
import {
  activationBackward,
  activationForward,
  type ActivationName,
} from "../../gpu/kernels/activation.ts";
import { gpu } from "../../gpu/runtime.ts";
import { fmtShape, ShapeError } from "../errors.ts";
import { record } from "../tape.ts";
import { assertLive, empty, type Tensor } from "../tensor.ts";

function activate(act: ActivationName, x: Tensor): Tensor {
  assertLive(act, x);
  if (x.dtype !== "f32") {
    throw new ShapeError(`${act}: needs an f32 tensor, got ${x.dtype} ${fmtShape(x.shape)}`);
  }
  const y = empty(x.shape);
  activationForward(gpu(), act, y.buffer, x.buffer, x.size);
  return record(act, [x], y, (dOut) => {
    const dX = empty(x.shape);
    activationBackward(gpu(), act, dX.buffer, x.buffer, dOut.buffer, x.size);
    return [dX];
  });
}

/** `max(x, 0)` elementwise. The gradient at exactly 0 is taken as 0. */
export function relu(x: Tensor): Tensor {
  return activate("relu", x);
}

/** GELU, tanh approximation, elementwise. */
export function gelu(x: Tensor): Tensor {
  return activate("gelu", x);
}
