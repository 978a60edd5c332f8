/**
 * add / sub / mul with broadcasting over leading dims, and scale.
 *
 * Broadcasting: the smaller operand's shape must be a suffix of the larger's
 * (a bias `(C)` against `(B, T, C)`); the result has the larger shape. The
 * gradient of the broadcast operand is the incoming gradient summed over the
 * leading dims.
 */
import { binaryKernel, type BinaryOpName, scaleKernel } from "../../gpu/kernels/elementwise.ts";
import { sumRowsKernel } from "../../gpu/kernels/reduce.ts";
import { gpu } from "../../gpu/runtime.ts";
import { fmtShape, ShapeError } from "../errors.ts";
import { record } from "../tape.ts";
import { assertLive, empty, type Tensor } from "../tensor.ts";

function isSuffix(small: readonly number[], big: readonly number[]): boolean {
  if (small.length > big.length) return false;
  const off = big.length - small.length;
  return small.every((d, i) => d === big[off + i]);
}

/** Checks the pair and returns [big, small, swapped]. */
function broadcastPair(op: string, a: Tensor, b: Tensor): [Tensor, Tensor, boolean] {
  assertLive(op, a, b);
  if (a.dtype !== "f32" || b.dtype !== "f32") {
    throw new ShapeError(`${op}: needs f32 tensors, got ${a.dtype} and ${b.dtype}`);
  }
  if (isSuffix(b.shape, a.shape)) return [a, b, false];
  if (isSuffix(a.shape, b.shape)) return [b, a, true];
  throw new ShapeError(
    `${op}: cannot broadcast ${fmtShape(a.shape)} with ${fmtShape(b.shape)}: ` +
      `one shape must be a suffix of the other`,
  );
}

function binaryForward(op: BinaryOpName, big: Tensor, small: Tensor, swapped: boolean): Tensor {
  const out = empty(big.shape);
  if (op === "sub" && swapped) {
    // small - big: compute big - small, then negate.
    const tmp = empty(big.shape);
    binaryKernel(gpu(), "sub", tmp.buffer, big.buffer, small.buffer, big.size, small.size);
    scaleKernel(gpu(), out.buffer, tmp.buffer, big.size, -1);
    tmp.release();
  } else {
    binaryKernel(gpu(), op, out.buffer, big.buffer, small.buffer, big.size, small.size);
  }
  return out;
}

/** Sums a gradient of the big shape down to the small (broadcast) shape. */
export function reduceToShape(g: Tensor, shape: readonly number[]): Tensor {
  const out = empty(shape);
  if (out.size === g.size) {
    gpu().recorder.copy(g.buffer, 0, out.buffer, 0, g.bytes);
  } else {
    sumRowsKernel(gpu(), out.buffer, g.buffer, g.size / out.size, out.size);
  }
  return out;
}

function scaled(g: Tensor, s: number): Tensor {
  const out = empty(g.shape);
  scaleKernel(gpu(), out.buffer, g.buffer, g.size, s);
  return out;
}

function mulBroadcast(big: Tensor, small: Tensor): Tensor {
  const out = empty(big.shape);
  binaryKernel(gpu(), "mul", out.buffer, big.buffer, small.buffer, big.size, small.size);
  return out;
}

/** `a + b`, broadcasting the smaller over the leading dims of the larger. */
export function add(a: Tensor, b: Tensor): Tensor {
  const [big, small, swapped] = broadcastPair("add", a, b);
  const out = binaryForward("add", big, small, swapped);
  return record("add", [a, b], out, (dOut, needs) => {
    const dBig = dOut;
    const dSmall = needs[swapped ? 0 : 1] ? reduceToShape(dOut, small.shape) : null;
    return swapped ? [dSmall, dBig.view(dBig.shape)] : [dBig.view(dBig.shape), dSmall];
  });
}

/** `a - b`, broadcasting as `add`. */
export function sub(a: Tensor, b: Tensor): Tensor {
  const [big, small, swapped] = broadcastPair("sub", a, b);
  const out = binaryForward("sub", big, small, swapped);
  return record("sub", [a, b], out, (dOut, needs) => {
    const dA = needs[0] ? (swapped ? reduceToShape(dOut, a.shape) : dOut.view(dOut.shape)) : null;
    let dB: Tensor | null = null;
    if (needs[1]) {
      const neg = scaled(dOut, -1);
      dB = swapped ? neg : reduceToShape(neg, b.shape);
      if (!swapped) neg.release();
    }
    return [dA, dB];
  });
}

/** `a * b` elementwise, broadcasting as `add`. */
export function mul(a: Tensor, b: Tensor): Tensor {
  const [big, small, swapped] = broadcastPair("mul", a, b);
  const out = binaryForward("mul", big, small, swapped);
  return record("mul", [a, b], out, (dOut, needs) => {
    // d big = dOut * small (broadcast); d small = sum_rows(dOut * big).
    const iBig = swapped ? 1 : 0;
    const iSmall = swapped ? 0 : 1;
    const grads: (Tensor | null)[] = [null, null];
    if (needs[iBig]) grads[iBig] = mulBroadcast(dOut, small);
    if (needs[iSmall]) {
      const prod = mulBroadcast(dOut, big);
      grads[iSmall] = reduceToShape(prod, small.shape);
      prod.release();
    }
    return grads;
  });
}

/** `a * s` for a scalar s. */
export function scale(a: Tensor, s: number): Tensor {
  assertLive("scale", a);
  const out = scaled(a, s);
  return record("scale", [a], out, (dOut) => [scaled(dOut, s)]);
}
