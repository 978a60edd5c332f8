import assert, { deepEqual, throws } from "node:assert/strict";
import { layerNorm } from "../../../core/ops/layernorm.ts";
import { ShapeError, TensorError } from "../../../core/errors.ts";
import { tidyAsync } from "../../../core/scope.ts";
import { backward } from "../../../core/tape.ts";
import { readAll, tensor } from "../../../core/tensor.ts";
import { gpu } from "../../../gpu/runtime.ts";
import { assertAllClose, checkOp, randn, setupGpu } from "../../_helpers.ts";

await setupGpu();

// Tolerances: forward atol 2e-5 / rtol 1e-4 (f32 vs float64; outputs are
// O(1)); backward vs central finite differences (eps 1e-6, float64)
// atol 1e-3 / rtol 1e-3.
const FWD = { atol: 2e-5, rtol: 1e-4 };
const BWD = { atol: 1e-3, rtol: 1e-3 };
const EPS = 1e-5;

/** Float64 LayerNorm over the last dim (biased variance). */
function layerNormRef(x: Float64Array, w: Float64Array, b: Float64Array): Float64Array {
  const c = w.length;
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / c; r++) {
    let m = 0;
    for (let j = 0; j < c; j++) m += x[r * c + j];
    m /= c;
    let v = 0;
    for (let j = 0; j < c; j++) v += (x[r * c + j] - m) ** 2;
    const rs = 1 / Math.sqrt(v / c + EPS);
    for (let j = 0; j < c; j++) y[r * c + j] = (x[r * c + j] - m) * rs * w[j] + b[j];
  }
  return y;
}

// Odd C takes the scalar kernels, C % 4 == 0 the vec4 ones; more than 256
// rows exercises the chunked dw / db reduction (2 and 3 chunks).
const SHAPES = [[7, 13], [1, 1], [33, 65], [2, 3, 17], [4, 8], [2, 5, 12], [300, 5], [520, 8]];

for (const shape of SHAPES) {
  const c = shape[shape.length - 1];
  const n = shape.reduce((a, b) => a * b, 1);
  Deno.test(`layerNorm() matches reference and finite differences for ${shape}`, async () => {
    await checkOp({
      inputs: [
        // An offset and scale per test so the normalisation does real work.
        { shape, data: randn(n, n, 3).map((v) => v + 2) },
        { shape: [c], data: randn(c, c + 1).map((v) => 1 + 0.5 * v) },
        { shape: [c], data: randn(c, c + 2, 0.5) },
      ],
      gpu: (x, w, b) => layerNorm(x, w, b),
      ref: layerNormRef,
      fwd: FWD,
      bwd: BWD,
    });
  });
}

Deno.test("layerNorm() gives the gradient of x alone when weight and bias are frozen", async () => {
  await checkOp({
    inputs: [{ shape: [5, 7] }, { shape: [7], grad: false }, { shape: [7], grad: false }],
    gpu: (x, w, b) => layerNorm(x, w, b),
    ref: layerNormRef,
    fwd: FWD,
    bwd: BWD,
  });
});

Deno.test("layerNorm() gives weight / bias gradients alone when x is frozen", async () => {
  await checkOp({
    inputs: [{ shape: [300, 6], grad: false }, { shape: [6] }, { shape: [6] }],
    gpu: (x, w, b) => layerNorm(x, w, b),
    ref: layerNormRef,
    fwd: FWD,
    bwd: BWD,
  });
});

Deno.test("layerNorm() dweight / dbias are bit-for-bit deterministic across runs", async () => {
  const [rows, c] = [700, 12];
  const xs = randn(rows * c, 5);
  const dy = randn(rows * c, 6);
  const run = () =>
    tidyAsync(async () => {
      const x = tensor(xs, [rows, c], { requiresGrad: true });
      const w = tensor(randn(c, 7), [c], { requiresGrad: true });
      const b = tensor(randn(c, 8), [c], { requiresGrad: true });
      backward(layerNorm(x, w, b), tensor(dy, [rows, c]));
      return await readAll([w.grad!, b.grad!]);
    });
  const [dw1, db1] = await run();
  const [dw2, db2] = await run();
  deepEqual(new Uint32Array(dw1.buffer), new Uint32Array(dw2.buffer));
  deepEqual(new Uint32Array(db1.buffer), new Uint32Array(db2.buffer));
  // And they are right: db = column sums of dy.
  const dbRef = new Float64Array(c);
  for (let i = 0; i < rows * c; i++) dbRef[i % c] += dy[i];
  assertAllClose(db1, dbRef, { atol: 1e-4, rtol: 1e-5 }, "dbias");
});

Deno.test("layerNorm() releases its saved mean / rstd when no gradient is needed", async () => {
  const pool = gpu().pool;
  const x = tensor(randn(12, 1), [3, 4]);
  const w = tensor(randn(4, 2), [4]);
  const b = tensor(randn(4, 3), [4]);
  const before = pool.stats().liveBuffers;
  const y = layerNorm(x, w, b);
  assert.equal(pool.stats().liveBuffers, before + 1);
  assertAllClose(
    (await readAll([y]))[0],
    layerNormRef(randn(12, 1), randn(4, 2), randn(4, 3)),
    FWD,
  );
  for (const t of [x, w, b, y]) t.release();
});

Deno.test("layerNorm() rejects a weight or bias that does not match the last dim", () => {
  const x = tensor(randn(24, 1), [2, 3, 4]);
  const good = tensor(randn(4, 2), [4]);
  const bad = tensor(randn(5, 3), [5]);
  const bad2d = tensor(randn(4, 4), [1, 4]);
  throws(
    () => layerNorm(x, bad, good),
    (e: Error) =>
      e instanceof ShapeError &&
      e.message === "layerNorm: weight [5] does not match input [2, 3, 4]: expected [4]",
  );
  throws(
    () => layerNorm(x, good, bad2d),
    /layerNorm: bias \[1, 4\] does not match input \[2, 3, 4\]/,
  );
  const scalar = tensor([1], []);
  throws(() => layerNorm(scalar, good, good), /layerNorm: input \[\] has no last dim/);
  for (const t of [x, good, bad, bad2d, scalar]) t.release();
});

Deno.test("layerNorm() rejects a released input, naming the op and the shape", () => {
  const x = tensor(randn(8, 1), [2, 4]);
  const w = tensor(randn(4, 2), [4]);
  x.release();
  throws(
    () => layerNorm(x, w, w),
    (e: Error) => e instanceof TensorError && /^layerNorm: input 0 .*\[2, 4\]/.test(e.message),
  );
  w.release();
});
