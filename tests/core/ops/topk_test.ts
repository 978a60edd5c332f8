import assert from "node:assert/strict";
import { topk } from "../../../core/ops/topk.ts";
import { ShapeError, TensorError } from "../../../core/errors.ts";
import { tidy, tidyAsync } from "../../../core/scope.ts";
import { tensor } from "../../../core/tensor.ts";
import { checkOp, randint, setupGpu } from "../../_helpers.ts";

await setupGpu();

/** Indices of the k largest per row: stable sort by value descending (ties: lower index first). */
function refTopk(x: Float64Array, n: number, k: number): Float64Array {
  const rows = n === 0 ? 0 : x.length / n;
  const out = new Float64Array(rows * k);
  for (let r = 0; r < rows; r++) {
    const order = Array.from({ length: n }, (_, i) => i);
    order.sort((a, b) => x[r * n + b] - x[r * n + a]); // Array.prototype.sort is stable
    for (let j = 0; j < k; j++) out[r * k + j] = order[j];
  }
  return out;
}

// Indices must match exactly (atol 0). f32 rounding of the random normals cannot create
// ties the f64 reference would not see: distinct f64 normals stay distinct in f32 here.
const EXACT = { atol: 0, rtol: 0 };

const CASES: [number[], number][] = [
  [[7, 13], 1],
  [[7, 13], 4],
  [[7, 13], 13], // k = n: a full descending sort
  [[1, 1], 1],
  [[5], 2], // 1-D
  [[2, 3, 16], 4], // (B, T, E)
  [[33, 65], 8],
  [[0, 4], 2], // no rows
];

for (const [shape, k] of CASES) {
  const n = shape[shape.length - 1];
  Deno.test(`topk() matches the reference for [${shape}], k = ${k}`, async () => {
    await checkOp({
      inputs: [{ shape }],
      gpu: (x) => {
        const idx = topk(x, k);
        assert.equal(idx.dtype, "u32");
        assert.deepEqual(idx.shape, [...shape.slice(0, -1), k]);
        return idx;
      },
      ref: (x) => refTopk(x, n, k),
      fwd: EXACT,
      noGrad: true,
      seed: n + k,
    });
  });
}

Deno.test("topk() sends ties to the lower index (many ties, k = 1 .. n)", async () => {
  const [rows, n] = [40, 9];
  const data = randint(rows * n, 3, 21); // values in {0, 1, 2}: every row has ties
  for (const k of [1, 3, 9]) {
    await checkOp({
      inputs: [{ shape: [rows, n], data }],
      gpu: (x) => topk(x, k),
      ref: (x) => refTopk(x, n, k),
      fwd: EXACT,
      noGrad: true,
    });
  }
});

Deno.test("topk() orders explicit ties, signed zeros, infinities and NaN", async () => {
  const rows: [number[], number, number[]][] = [
    [[1, 3, 3, 2, 3], 3, [1, 2, 4]],
    [[5, 5, 5, 5], 4, [0, 1, 2, 3]],
    [[-0, 0, -0], 3, [0, 1, 2]], // −0 equals +0: index order
    [[0, -0], 1, [0]],
    [[-1, -Infinity, Infinity, -2], 4, [2, 0, 3, 1]],
    [[1, NaN, 2], 2, [1, 2]], // NaN ranks first, as in torch.topk
    [[-3.5, -3.25, -3.75], 3, [1, 0, 2]],
  ];
  await tidyAsync(async () => {
    for (const [values, k, expected] of rows) {
      const got = await topk(tensor(values, [values.length]), k).toArray();
      assert.deepEqual([...got], expected, `topk(${values}, ${k})`);
    }
  });
});

function throwsNaming(fn: () => unknown, cls: typeof ShapeError, ...patterns: RegExp[]): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e.name}: ${e.message}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

Deno.test("topk() rejects k out of range, bad dtypes and released tensors", () => {
  tidy(() => {
    const x = tensor(new Float32Array(12), [3, 4]);
    throwsNaming(() => topk(x, 5), ShapeError, /^topk: k = 5 is out of range for \[3, 4\]/, /<= 4/);
    throwsNaming(() => topk(x, 0), ShapeError, /^topk: k = 0/);
    throwsNaming(() => topk(x, 1.5), ShapeError, /^topk: k = 1.5/);
    const ints = tensor(new Uint32Array(4), [4], { dtype: "u32" });
    throwsNaming(() => topk(ints, 1), ShapeError, /^topk: x must be an f32/, /u32 \[4\]/);
    throwsNaming(() => topk(tensor([1], []), 1), ShapeError, /^topk/, /\[\]/);
    const gone = tensor(new Float32Array(12), [3, 4]);
    gone.release();
    throwsNaming(() => topk(gone, 2), TensorError, /^topk: input 0/, /\[3, 4\]/);
  });
});
