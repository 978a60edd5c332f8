/**
 * sum / mean over all elements (to a 0-d tensor, shape []) or over the last
 * dim (that dim dropped: (..., C) -> (...)). Every sum runs in a fixed
 * order (no atomics), so results are deterministic.
 *
 * The backward broadcasts the incoming gradient back over the reduced
 * elements, times 1/count for mean.
 */
import { expandRowsKernel, sumAllKernel, sumLastKernel } from "../../gpu/kernels/reduce.ts";
import { gpu } from "../../gpu/runtime.ts";
import { fmtShape, ShapeError } from "../errors.ts";
import { record } from "../tape.ts";
import { assertLive, empty, numel, type Tensor } from "../tensor.ts";

function reduce(op: "sum" | "mean", x: Tensor, dim: number | undefined): Tensor {
  assertLive(op, x);
  if (x.dtype !== "f32") {
    throw new ShapeError(`${op}: needs an f32 tensor, got ${x.dtype} ${fmtShape(x.shape)}`);
  }
  const nd = x.shape.length;
  let rows: number, cols: number, outShape: number[];
  if (dim === undefined) {
    [rows, cols, outShape] = [1, x.size, []]; // ()
  } else {
    if (nd === 0 || (dim !== -1 && dim !== nd - 1)) {
      throw new ShapeError(
        `${op}: cannot reduce dim ${dim} of ${fmtShape(x.shape)}: only the last dim ` +
          `(-1) or all elements (no dim) are supported`,
      );
    }
    cols = x.shape[nd - 1];
    outShape = x.shape.slice(0, -1); // (...)
    rows = numel(outShape);
  }
  const scale = op === "mean" ? 1 / cols : 1;
  const out = empty(outShape);
  if (dim === undefined) sumAllKernel(gpu(), out.buffer, x.buffer, x.size, scale);
  else sumLastKernel(gpu(), out.buffer, x.buffer, rows, cols, scale);
  return record(op, [x], out, (dOut) => {
    const dX = empty(x.shape);
    expandRowsKernel(gpu(), dX.buffer, dOut.buffer, rows, cols, scale);
    return [dX];
  });
}

/**
 * Sum of `x`: over all elements to shape [] when `dim` is omitted, or over
 * the last dim (`dim` = -1 or ndim - 1), which is dropped.
 */
export function sum(x: Tensor, dim?: number): Tensor {
  return reduce("sum", x, dim);
}

/** Mean of `x`, over all elements or the last dim, as `sum`. */
export function mean(x: Tensor, dim?: number): Tensor {
  return reduce("mean", x, dim);
}

/**
 * Fraction of the elements of `x` that are > 0, as a one-element tensor (no
 * gradient): the activation ratio of a ReLU output.
 */
export function fractionPositive(x: Tensor): Tensor {
  assertLive("fractionPositive", x);
  if (x.dtype !== "f32" || x.size === 0) {
    throw new ShapeError(
      `fractionPositive: needs a non-empty f32 tensor, got ${x.dtype} ${fmtShape(x.shape)}`,
    );
  }
  const out = empty([1]);
  sumAllKernel(gpu(), out.buffer, x.buffer, x.size, 1 / x.size, true);
  return out;
}
