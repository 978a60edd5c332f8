/**
 * Row gather, row scatter-add and the embedding lookup, by u32 index tensors.
 *
 * gather and scatterAdd are each other's backward. Indices live on the GPU,
 * so a range check would cost a read-back: instead an out-of-range index
 * (≥ the row count) reads as a zero row in gather and is skipped by
 * scatterAdd, and gradients follow the same rule. Kernels and the
 * deterministic (atomic-free) scatter: `gpu/kernels/gather.ts`.
 */
import { gatherKernel, scatterAddKernel } from "../../gpu/kernels/gather.ts";
import { gpu } from "../../gpu/runtime.ts";
import { fmtShape, ShapeError } from "../errors.ts";
import { record } from "../tape.ts";
import { assertLive, empty, type Tensor } from "../tensor.ts";

function checkTable(op: string, what: string, t: Tensor): void {
  if (t.dtype !== "f32" || t.shape.length !== 2) {
    throw new ShapeError(
      `${op}: ${what} must be a 2-D f32 tensor, got ${t.dtype} ${fmtShape(t.shape)}`,
    );
  }
}

function checkIndices(op: string, what: string, idx: Tensor): void {
  if (idx.dtype !== "u32") {
    throw new ShapeError(`${op}: ${what} must be u32, got ${idx.dtype} ${fmtShape(idx.shape)}`);
  }
}

/** gather with the op name used in errors and on the tape; out has shape [...idx.shape, D]. */
function gatherRows(op: string, src: Tensor, idx: Tensor): Tensor {
  const [R, D] = src.shape;
  const out = empty([...idx.shape, D]); // (..., D)
  gatherKernel(gpu(), out.buffer, { src: src.buffer, idx: idx.buffer }, { N: idx.size, R, D });
  return record(op, [src, idx], out, (dOut, needs) => {
    if (!needs[0]) return [null, null];
    const dSrc = empty([R, D]); // (R, D)
    scatterAddKernel(gpu(), dSrc.buffer, { src: dOut.buffer, idx: idx.buffer }, {
      N: idx.size,
      R,
      D,
    });
    return [dSrc, null];
  });
}

/**
 * Gathers rows: `out[i] = src[idx[i]]`; an index ≥ R gives a zero row.
 *
 * @param src (R, D) f32
 * @param idx (N) u32 (any shape: the output is `[...idx.shape, D]`)
 * @returns (N, D); the gradient of src is the scatter-add of the output's gradient
 *
 * @example
 * ```ts
 * const rows = gather(table, tensor([2, 0, 2], [3], { dtype: "u32" })); // (3, D)
 * ```
 */
export function gather(src: Tensor, idx: Tensor): Tensor {
  assertLive("gather", src, idx);
  checkTable("gather", "src", src);
  checkIndices("gather", "idx", idx);
  return gatherRows("gather", src, idx);
}

/**
 * Scatter-adds rows: `out[idx[i]] += src[i]` into `rows` zero rows, in a
 * fixed order (deterministic); an index ≥ rows is skipped.
 *
 * @param src (N, D) f32
 * @param idx (N) u32, one index per row of src
 * @param rows R, the number of output rows
 * @returns (R, D); the gradient of src is the gather of the output's gradient
 *
 * @example
 * ```ts
 * const sums = scatterAdd(x, tensor([1, 1, 0], [3], { dtype: "u32" }), 2); // (2, D)
 * ```
 */
export function scatterAdd(src: Tensor, idx: Tensor, rows: number): Tensor {
  assertLive("scatterAdd", src, idx);
  checkTable("scatterAdd", "src", src);
  checkIndices("scatterAdd", "idx", idx);
  const [N, D] = src.shape;
  if (idx.shape.length !== 1 || idx.shape[0] !== N) {
    throw new ShapeError(
      `scatterAdd: idx ${fmtShape(idx.shape)} does not match src ${fmtShape(src.shape)}: ` +
        `need one index per row (${N})`,
    );
  }
  if (!Number.isInteger(rows) || rows < 0) {
    throw new ShapeError(
      `scatterAdd: rows must be a non-negative integer, got ${rows} for src ${fmtShape(src.shape)}`,
    );
  }
  const out = empty([rows, D]); // (R, D)
  scatterAddKernel(gpu(), out.buffer, { src: src.buffer, idx: idx.buffer }, { N, R: rows, D });
  return record("scatterAdd", [src, idx], out, (dOut, needs) => {
    if (!needs[0]) return [null, null];
    const dSrc = empty([N, D]); // (N, D)
    gatherKernel(gpu(), dSrc.buffer, { src: dOut.buffer, idx: idx.buffer }, { N, R: rows, D });
    return [dSrc, null];
  });
}

/**
 * Embedding lookup: `out[b, t] = weight[tokens[b, t]]`; a token ≥ V gives a
 * zero row (and no gradient).
 *
 * @param weight (V, C) f32
 * @param tokens (B, T) u32
 * @returns (B, T, C); the gradient of weight scatter-adds the output's gradient by token
 *
 * @example
 * ```ts
 * const x = embedding(wte, tokens); // (V, C), (B, T) → (B, T, C)
 * ```
 */
export function embedding(weight: Tensor, tokens: Tensor): Tensor {
  assertLive("embedding", weight, tokens);
  checkTable("embedding", "weight", weight);
  checkIndices("embedding", "tokens", tokens);
  if (tokens.shape.length !== 2) {
    throw new ShapeError(
      `embedding: tokens must be (B, T), got ${fmtShape(tokens.shape)} ` +
        `for weight ${fmtShape(weight.shape)}`,
    );
  }
  return gatherRows("embedding", weight, tokens); // (B, T, C)
}
