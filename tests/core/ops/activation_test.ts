import assert, { throws } from "node:assert/strict";
import { gelu, relu } from "../../../core/ops/activation.ts";
import { TensorError } from "../../../core/errors.ts";
import { tensor } from "../../../core/tensor.ts";
import { checkOp, randn, setupGpu } from "../../_helpers.ts";

await setupGpu();

// Tolerances: forward atol 1e-5 / rtol 1e-4 (f32 vs float64); backward vs
// central finite differences (eps 1e-6, float64) atol 1e-3 / rtol 1e-3.
const FWD = { atol: 1e-5, rtol: 1e-4 };
const BWD = { atol: 1e-3, rtol: 1e-3 };

// Odd sizes take the scalar kernel, multiples of 4 the vec4 one.
const SHAPES = [[7, 13], [1, 1], [33, 65], [2, 3, 17], [4, 8], [2, 3, 16]];

const K0 = Math.sqrt(2 / Math.PI);
const geluRef = (x: Float64Array) =>
  x.map((v) => 0.5 * v * (1 + Math.tanh(K0 * (v + 0.044715 * v * v * v))));
const reluRef = (x: Float64Array) => x.map((v) => Math.max(v, 0));

/** Normals with |x| < 0.05 pushed out to 0.05..0.1, so no FD step crosses ReLU's kink. */
function awayFromZero(n: number, seed: number): Float64Array {
  return randn(n, seed).map((v) => Math.abs(v) < 0.05 ? v + Math.sign(v || 1) * 0.05 : v);
}

for (const shape of SHAPES) {
  const n = shape.reduce((a, b) => a * b, 1);
  Deno.test(`relu() matches reference and finite differences for ${shape}`, async () => {
    await checkOp({
      inputs: [{ shape, data: awayFromZero(n, n) }],
      gpu: relu,
      ref: reluRef,
      fwd: FWD,
      bwd: BWD,
    });
  });
  Deno.test(`gelu() matches reference and finite differences for ${shape}`, async () => {
    await checkOp({
      inputs: [{ shape, data: randn(n, n + 1, 2) }],
      gpu: gelu,
      ref: geluRef,
      fwd: FWD,
      bwd: BWD,
    });
  });
}

Deno.test("gelu() stays finite and exact for large |x| (tanh saturation)", async () => {
  const data = Float64Array.from({ length: 64 }, (_, i) => (i - 32) * 1.7);
  await checkOp({ inputs: [{ shape: [64], data }], gpu: gelu, ref: geluRef, fwd: FWD, bwd: BWD });
  await checkOp({
    inputs: [{ shape: [63], data: data.subarray(1) }],
    gpu: gelu,
    ref: geluRef,
    fwd: FWD,
    bwd: BWD,
  });
});

Deno.test("relu() maps exact zeros and negatives to 0", async () => {
  await checkOp({
    inputs: [{ shape: [6], data: [0, -0, -1, 2, -3e-8, 5] }],
    gpu: relu,
    ref: reluRef,
    noGrad: true,
  });
});

Deno.test("relu() / gelu() reject a released tensor, naming the op and the shape", () => {
  const x = tensor([1, 2, 3], [3]);
  x.release();
  throws(() => relu(x), (e: Error) => {
    assert(e instanceof TensorError);
    assert(e.message.startsWith("relu:") && e.message.includes("[3]"), e.message);
    return true;
  });
  throws(() => gelu(x), (e: Error) => e instanceof TensorError && e.message.startsWith("gelu:"));
});

Deno.test("gelu() rejects a u32 tensor", () => {
  const x = tensor([1, 2], [2], { dtype: "u32" });
  throws(() => gelu(x), /gelu: needs an f32 tensor, got u32 \[2\]/);
  x.release();
});
