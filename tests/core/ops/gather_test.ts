import assert from "node:assert/strict";
import { embedding, gather, scatterAdd } from "../../../core/ops/gather.ts";
import { ShapeError, TensorError } from "../../../core/errors.ts";
import { tidy, tidyAsync } from "../../../core/scope.ts";
import { readAll, tensor } from "../../../core/tensor.ts";
import { checkOp, randint, randn, setupGpu } from "../../_helpers.ts";

await setupGpu();

// ---- float64 references; an index ≥ R reads a zero row / is skipped (the ops' rule).

function refGather(src: Float64Array, idx: Float64Array, R: number, D: number): Float64Array {
  const out = new Float64Array(idx.length * D);
  idx.forEach((r, i) => {
    if (r < R) { for (let c = 0; c < D; c++) out[i * D + c] = src[r * D + c]; }
  });
  return out;
}

function refScatterAdd(src: Float64Array, idx: Float64Array, R: number, D: number): Float64Array {
  const out = new Float64Array(R * D);
  idx.forEach((r, i) => {
    if (r < R) { for (let c = 0; c < D; c++) out[r * D + c] += src[i * D + c]; }
  });
  return out;
}

// Tolerances: gather is a copy (exact, atol 0); scatter-add sums ≤ 33 f32 terms
// (atol 1e-5, rtol 1e-5); gradients vs f64 central differences atol 1e-4, rtol 1e-3.
const EXACT = { atol: 0, rtol: 0 };
const SUMS = { atol: 1e-5, rtol: 1e-5 };
const GRAD = { atol: 1e-4, rtol: 1e-3 };

const GATHER_CASES: [number, number, number][] = [
  // R, D, N
  [5, 3, 7], // N > R: repeated rows, their gradients add up
  [1, 1, 1],
  [13, 1, 7], // D = 1
  [7, 13, 33],
  [65, 17, 5],
  [4, 6, 0], // no indices
];

for (const [R, D, N] of GATHER_CASES) {
  Deno.test(`gather() matches reference and finite differences for src [${R}, ${D}], idx [${N}]`, async () => {
    await checkOp({
      inputs: [{ shape: [R, D] }, { shape: [N], dtype: "u32", data: randint(N, R, R + N) }],
      gpu: gather,
      ref: (src, idx) => refGather(src, idx, R, D),
      fwd: EXACT,
      bwd: GRAD,
    });
  });
}

const SCATTER_CASES: [number, number, number][] = [
  // N, D, R
  [7, 3, 5],
  [1, 1, 1],
  [33, 65, 4], // D > the 32-column block: three blocks, the last partial
  [5, 1, 13], // R > N: some rows get nothing
  [0, 3, 4], // no sources: zeros
];

for (const [N, D, R] of SCATTER_CASES) {
  Deno.test(`scatterAdd() matches reference and finite differences for src [${N}, ${D}] into ${R} rows`, async () => {
    await checkOp({
      inputs: [{ shape: [N, D] }, { shape: [N], dtype: "u32", data: randint(N, R, 3 * N + R) }],
      gpu: (src, idx) => scatterAdd(src, idx, R),
      ref: (src, idx) => refScatterAdd(src, idx, R, D),
      fwd: SUMS,
      bwd: GRAD,
    });
  });
}

const EMBEDDING_CASES: [number, number, number, number][] = [
  // V, C, B, T
  [13, 12, 2, 7],
  [65, 1, 1, 1],
  [256, 5, 3, 13],
];

for (const [V, C, B, T] of EMBEDDING_CASES) {
  Deno.test(`embedding() matches reference and finite differences for weight [${V}, ${C}], tokens [${B}, ${T}]`, async () => {
    await checkOp({
      inputs: [{ shape: [V, C] }, { shape: [B, T], dtype: "u32", data: randint(B * T, V, V + T) }],
      gpu: (w, tok) => {
        const y = embedding(w, tok);
        assert.deepEqual(y.shape, [B, T, C]);
        return y;
      },
      ref: (w, tok) => refGather(w, tok, V, C),
      fwd: EXACT,
      bwd: GRAD,
    });
  });
}

// ---- out-of-range indices: documented as zero rows (gather) and skipped (scatterAdd)

Deno.test("gather() and embedding() give zero rows for out-of-range indices, and no gradient to them", async () => {
  const idx = [0, 5, 2, 0xffffffff, 4];
  await checkOp({
    inputs: [{ shape: [5, 3] }, { shape: [5], dtype: "u32", data: idx }],
    gpu: gather,
    ref: (src, ix) => {
      const out = refGather(src, ix, 5, 3);
      assert.deepEqual([...out.subarray(3, 6), ...out.subarray(9, 12)], [0, 0, 0, 0, 0, 0]);
      return out;
    },
    fwd: EXACT,
    bwd: GRAD,
  });
  await checkOp({
    inputs: [{ shape: [4, 2] }, { shape: [1, 3], dtype: "u32", data: [3, 4, 1000] }],
    gpu: embedding,
    ref: (w, tok) => refGather(w, tok, 4, 2),
    fwd: EXACT,
    bwd: GRAD,
  });
});

Deno.test("scatterAdd() skips out-of-range indices, and their sources get a zero gradient", async () => {
  await checkOp({
    inputs: [{ shape: [5, 2] }, { shape: [5], dtype: "u32", data: [1, 3, 1, 0xffffffff, 2] }],
    gpu: (src, idx) => scatterAdd(src, idx, 3),
    ref: (src, idx) => refScatterAdd(src, idx, 3, 2),
    fwd: SUMS,
    bwd: GRAD,
  });
});

Deno.test("scatterAdd() is deterministic: bit-identical runs equal to the f32 sum in index order", async () => {
  const [N, D, R] = [200, 70, 3];
  const src = Float32Array.from(randn(N * D, 9, 100));
  const idx = randint(N, R, 10);
  await tidyAsync(async () => {
    const s = tensor(src, [N, D]);
    const ix = tensor(idx, [N], { dtype: "u32" });
    const [a, b] = await readAll([scatterAdd(s, ix, R), scatterAdd(s, ix, R)]);
    const expected = new Float32Array(R * D);
    for (let i = 0; i < N; i++) {
      for (let c = 0; c < D; c++) {
        const o = idx[i] * D + c;
        expected[o] = Math.fround(expected[o] + src[i * D + c]);
      }
    }
    assert.deepEqual(a, b);
    assert.deepEqual(a, expected);
  });
});

// ---- bad input

function throwsNaming(fn: () => unknown, cls: typeof ShapeError, ...patterns: RegExp[]): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e.name}: ${e.message}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

Deno.test("gather(), scatterAdd() and embedding() reject bad shapes, dtypes and released tensors", () => {
  tidy(() => {
    const src = tensor(new Float32Array(12), [4, 3]);
    const idx4 = tensor([0, 1, 2, 3], [4], { dtype: "u32" });
    const idx5 = tensor([0, 1, 2, 3, 0], [5], { dtype: "u32" });
    const fidx = tensor([0, 1], [2]);
    const flat = tensor(new Float32Array(12), [12]);
    throwsNaming(() => gather(flat, idx4), ShapeError, /^gather: src/, /\[12\]/);
    throwsNaming(() => gather(src, fidx), ShapeError, /^gather: idx must be u32/, /\[2\]/);
    throwsNaming(() => scatterAdd(src, idx5, 3), ShapeError, /^scatterAdd/, /\[5\]/, /\[4, 3\]/);
    throwsNaming(() => scatterAdd(src, idx4, -1), ShapeError, /^scatterAdd: rows/);
    throwsNaming(() => scatterAdd(src, idx4, 2.5), ShapeError, /^scatterAdd: rows/);
    throwsNaming(
      () => embedding(src, idx4),
      ShapeError,
      /^embedding: tokens must be \(B, T\)/,
      /\[4\]/,
      /\[4, 3\]/,
    );
    throwsNaming(
      () => embedding(idx4.view([2, 2]), idx4.view([2, 2])),
      ShapeError,
      /^embedding: weight/,
    );
    const gone = tensor(new Float32Array(12), [4, 3]);
    gone.release();
    throwsNaming(() => gather(gone, idx4), TensorError, /^gather: input 0/, /\[4, 3\]/);
    throwsNaming(() => scatterAdd(gone, idx4, 2), TensorError, /^scatterAdd/, /\[4, 3\]/);
    throwsNaming(() => embedding(gone, idx4.view([1, 4])), TensorError, /^embedding/, /\[4, 3\]/);
  });
});
