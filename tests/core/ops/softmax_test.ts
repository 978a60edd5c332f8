import assert, { throws } from "node:assert/strict";
import { softmax } from "../../../core/ops/softmax.ts";
import { ShapeError, TensorError } from "../../../core/errors.ts";
import { tensor } from "../../../core/tensor.ts";
import { assertAllClose, checkOp, randn, setupGpu } from "../../_helpers.ts";

await setupGpu();

// Tolerances: forward atol 1e-6 / rtol 1e-4 (probabilities in [0, 1], f32
// vs float64); backward vs central finite differences (eps 1e-6, float64)
// atol 1e-4 / rtol 1e-3 (the gradients are O(0.1), so 1e-3 would hide bugs).
const FWD = { atol: 1e-6, rtol: 1e-4 };
const BWD = { atol: 1e-4, rtol: 1e-3 };

/** Float64 softmax over rows of length c. */
function softmaxRef(c: number) {
  return (x: Float64Array) => {
    const y = new Float64Array(x.length);
    for (let r = 0; r < x.length / c; r++) {
      const row = x.subarray(r * c, (r + 1) * c);
      const m = Math.max(...row);
      let s = 0;
      for (let j = 0; j < c; j++) s += Math.exp(row[j] - m);
      for (let j = 0; j < c; j++) y[r * c + j] = Math.exp(row[j] - m) / s;
    }
    return y;
  };
}

// Odd C takes the scalar kernels, C % 4 == 0 the vec4 ones.
const SHAPES = [[7, 13], [1, 1], [33, 65], [2, 3, 17], [4, 8], [2, 5, 12], [3, 1], [2, 256]];

for (const shape of SHAPES) {
  const c = shape[shape.length - 1];
  const n = shape.reduce((a, b) => a * b, 1);
  Deno.test(`softmax() matches reference and finite differences for ${shape}`, async () => {
    await checkOp({
      inputs: [{ shape, data: randn(n, n, 2) }],
      gpu: softmax,
      ref: softmaxRef(c),
      fwd: FWD,
      bwd: BWD,
    });
  });
}

Deno.test("softmax() is stable for large logits (no overflow to NaN)", async () => {
  // exp(1000) overflows f32; subtracting the row max keeps it finite.
  const data = [1000, 999, 998, 990, -1000, -1001, -1003, -1010, 50, 50, 50, 50];
  await checkOp({
    inputs: [{ shape: [3, 4], data }],
    gpu: softmax,
    ref: softmaxRef(4),
    fwd: FWD,
    bwd: BWD,
  });
  await checkOp({
    inputs: [{ shape: [4, 3], data }],
    gpu: softmax,
    ref: softmaxRef(3),
    fwd: FWD,
    bwd: BWD,
  });
});

Deno.test("softmax() rows sum to 1", async () => {
  const x = tensor(randn(33 * 65, 3, 4), [33, 65]);
  const y = softmax(x);
  const got = await y.data();
  const sums = Array.from(
    { length: 33 },
    (_, r) => got.subarray(r * 65, r * 65 + 65).reduce((a, b) => a + b, 0),
  );
  assertAllClose(sums, new Array(33).fill(1), { atol: 1e-5, rtol: 0 }, "row sums");
  x.release();
  y.release();
});

Deno.test("softmax() rejects a released input, a 0-d input and a u32 input", () => {
  const x = tensor(randn(6, 1), [2, 3]);
  x.release();
  throws(() => softmax(x), (e: Error) => {
    assert(e instanceof TensorError);
    assert(/^softmax: input 0 .*\[2, 3\]/.test(e.message), e.message);
    return true;
  });
  const s = tensor([1], []);
  throws(
    () => softmax(s),
    (e: Error) => e instanceof ShapeError && /^softmax: input \[\]/.test(e.message),
  );
  const u = tensor([1, 2], [2], { dtype: "u32" });
  throws(() => softmax(u), /softmax: needs an f32 tensor, got u32 \[2\]/);
  s.release();
  u.release();
});
