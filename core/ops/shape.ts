/**
 * Shape ops: reshape (a view on the same storage) and permute / transpose
 * (a real strided copy into a new contiguous tensor).
 *
 * reshape's gradient is the incoming gradient viewed in the input's shape;
 * permute's is the incoming gradient permuted by the inverse permutation.
 * Both work on f32 and u32 tensors (only f32 ones carry gradients).
 */
import { PERMUTE_MAX_DIMS, permuteKernel, planPermute } from "../../gpu/kernels/transpose.ts";
import { gpu } from "../../gpu/runtime.ts";
import { fmtShape, ShapeError } from "../errors.ts";
import { record } from "../tape.ts";
import { assertLive, empty, numel, type Tensor } from "../tensor.ts";

/**
 * `x` with another shape of the same element count, sharing its storage.
 * One dim may be -1: it is inferred from the others.
 */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  assertLive("reshape", x);
  const bad = () =>
    new ShapeError(
      `reshape: cannot reshape ${fmtShape(x.shape)} (${x.size} elements) to ${fmtShape(shape)}`,
    );
  const free = shape.filter((d) => d === -1).length;
  if (free > 1 || shape.some((d) => !Number.isInteger(d) || d < -1)) throw bad();
  let target = [...shape];
  if (free === 1) {
    const known = numel(shape.filter((d) => d !== -1));
    if (known === 0 || x.size % known !== 0) throw bad();
    target = shape.map((d) => d === -1 ? x.size / known : d);
  }
  if (numel(target) !== x.size) throw bad();
  const out = x.view(target);
  return record("reshape", [x], out, (dOut) => [dOut.view(x.shape)]);
}

/** Normalises a possibly negative dim index, or throws naming the op. */
function axis(op: string, x: Tensor, d: number): number {
  const nd = x.shape.length;
  if (!Number.isInteger(d) || d < -nd || d >= nd) {
    throw new ShapeError(`${op}: dim ${d} is out of range for ${fmtShape(x.shape)}`);
  }
  return d < 0 ? d + nd : d;
}

function permuteRaw(x: Tensor, perm: readonly number[]): Tensor {
  const out = empty(perm.map((k) => x.shape[k]), x.dtype); // permuted dims
  permuteKernel(gpu(), out.buffer, x.buffer, x.shape, perm);
  return out;
}

/**
 * A copy of `x` with its dims reordered: output dim k is input dim
 * `perm[k]` (negative entries count from the end).
 */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  assertLive("permute", x);
  const nd = x.shape.length;
  const seen = new Set<number>();
  const p = perm.map((d) => {
    const k = Number.isInteger(d) && d >= -nd && d < nd ? (d < 0 ? d + nd : d) : -1;
    if (k < 0 || seen.has(k)) return -1;
    seen.add(k);
    return k;
  });
  if (perm.length !== nd || p.includes(-1)) {
    throw new ShapeError(
      `permute: ${fmtShape(perm)} is not a permutation of the ${nd} dims of ${fmtShape(x.shape)}`,
    );
  }
  const merged = planPermute(x.shape, p).shape.length;
  if (merged > PERMUTE_MAX_DIMS) {
    throw new ShapeError(
      `permute: ${fmtShape(perm)} of ${fmtShape(x.shape)} needs ${merged} dims after ` +
        `merging contiguous ones, more than the ${PERMUTE_MAX_DIMS} supported`,
    );
  }
  const inverse = new Array<number>(nd);
  p.forEach((k, i) => inverse[k] = i);
  const out = permuteRaw(x, p);
  return record("permute", [x], out, (dOut) => [permuteRaw(dOut, inverse)]);
}

/** A copy of `x` with dims `d0` and `d1` swapped (default: the last two). */
export function transpose(x: Tensor, d0 = -2, d1 = -1): Tensor {
  assertLive("transpose", x);
  const a = axis("transpose", x, d0);
  const b = axis("transpose", x, d1);
  const perm = x.shape.map((_, i) => i === a ? b : i === b ? a : i);
  return permute(x, perm);
}
