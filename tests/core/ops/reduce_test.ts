import assert, { throws } from "node:assert/strict";
import { fractionPositive, mean, sum } from "../../../core/ops/reduce.ts";
import { ShapeError, TensorError } from "../../../core/errors.ts";
import { readAll, tensor } from "../../../core/tensor.ts";
import { assertAllClose, checkOp, setupGpu } from "../../_helpers.ts";

await setupGpu();

// Tolerances: forward atol 1e-4 / rtol 1e-5 (f32 sums of up to ~2000 normals
// vs float64); backward vs central finite differences (eps 1e-6, float64)
// atol 1e-4 / rtol 1e-4 (the gradient is the upstream value, times 1/C for mean).
const FWD = { atol: 1e-4, rtol: 1e-5 };
const BWD = { atol: 1e-4, rtol: 1e-4 };

function sumLastRef(c: number, meanOf: boolean) {
  return (x: Float64Array) => {
    const out = new Float64Array(x.length / c);
    for (let i = 0; i < x.length; i++) out[Math.floor(i / c)] += x[i];
    return meanOf ? out.map((v) => v / c) : out;
  };
}

function sumAllRef(meanOf: boolean) {
  return (x: Float64Array) => {
    const s = x.reduce((a, b) => a + b, 0);
    return Float64Array.of(meanOf ? s / x.length : s);
  };
}

// Odd last dims take the scalar kernels, multiples of 4 the vec4 ones.
const SHAPES = [[7, 13], [1, 1], [33, 65], [2, 3, 17], [4, 8], [2, 5, 12], [300], [1, 7]];

for (const shape of SHAPES) {
  const c = shape[shape.length - 1];
  for (const [name, op, isMean] of [["sum", sum, false], ["mean", mean, true]] as const) {
    Deno.test(`${name}() over all elements matches reference and FD for ${shape}`, async () => {
      await checkOp({
        inputs: [{ shape }],
        gpu: (x) => {
          const y = op(x);
          assert.deepEqual(y.shape, []);
          return y;
        },
        ref: sumAllRef(isMean),
        fwd: FWD,
        bwd: BWD,
      });
    });
    Deno.test(`${name}(x, -1) over the last dim matches reference and FD for ${shape}`, async () => {
      await checkOp({
        inputs: [{ shape }],
        gpu: (x) => {
          const y = op(x, -1);
          assert.deepEqual(y.shape, shape.slice(0, -1));
          return y;
        },
        ref: sumLastRef(c, isMean),
        fwd: FWD,
        bwd: BWD,
      });
    });
  }
}

Deno.test("sum(x, ndim - 1) is the same as sum(x, -1)", async () => {
  await checkOp({
    inputs: [{ shape: [3, 4, 5] }],
    gpu: (x) => sum(x, 2),
    ref: sumLastRef(5, false),
    fwd: FWD,
    bwd: BWD,
  });
});

Deno.test("sum() over all elements of a large tensor takes every element once", async () => {
  const n = 70_001;
  const data = Float64Array.from({ length: n }, (_, i) => (i % 7) - 3);
  await checkOp({
    inputs: [{ shape: [n], data }],
    gpu: (x) => sum(x),
    ref: sumAllRef(false),
    fwd: { atol: 0, rtol: 0 },
    noGrad: true,
  });
  await checkOp({
    inputs: [{ shape: [70, 1000], data: data.subarray(0, 70_000) }],
    gpu: (x) => mean(x, -1),
    ref: sumLastRef(1000, true),
    fwd: FWD,
    noGrad: true,
  });
});

Deno.test("sum() / mean() reject an unsupported dim, naming the op and the shape", () => {
  const x = tensor(new Float32Array(6), [2, 3]);
  throws(
    () => sum(x, 0),
    (e: Error) =>
      e instanceof ShapeError && e.message.startsWith("sum: cannot reduce dim 0 of [2, 3]"),
  );
  throws(() => mean(x, 5), /^ShapeError: mean: cannot reduce dim 5 of \[2, 3\]/);
  const s = tensor([1], []);
  throws(() => sum(s, -1), /sum: cannot reduce dim -1 of \[\]/);
  x.release();
  s.release();
});

Deno.test("sum() / mean() reject a released input and a u32 input", () => {
  const x = tensor([1, 2, 3, 4], [2, 2]);
  x.release();
  throws(
    () => mean(x),
    (e: Error) => e instanceof TensorError && /^mean: input 0 .*\[2, 2\]/.test(e.message),
  );
  const u = tensor([1, 2], [2], { dtype: "u32" });
  throws(() => sum(u), /sum: needs an f32 tensor, got u32 \[2\]/);
  u.release();
});

Deno.test("fractionPositive() counts elements > 0 (zeros and -0 do not count)", async () => {
  const data = [
    1,
    0,
    -0,
    -2,
    3e-30,
    5,
    -1e-30,
    0.5,
    ...Array.from({ length: 1000 }, (_, i) => i % 3 - 1),
  ];
  const want = data.filter((v) => v > 0).length / data.length;
  const x = tensor(data, [data.length]);
  const f = fractionPositive(x);
  const [got] = await readAll([f]);
  assertAllClose(got, [want], { atol: 1e-7, rtol: 1e-6 }, "fraction");
  x.release();
  f.release();
});
