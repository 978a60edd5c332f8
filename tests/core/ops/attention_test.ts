import assert from "node:assert/strict";
import { attention } from "../../../core/ops/attention.ts";
import { ShapeError, TensorError } from "../../../core/errors.ts";
import { tidy, tidyAsync } from "../../../core/scope.ts";
import { backward, noGrad } from "../../../core/tape.ts";
import { tensor } from "../../../core/tensor.ts";
import { gpu } from "../../../gpu/runtime.ts";
import { assertAllClose, checkOp, randn, setupGpu } from "../../_helpers.ts";

await setupGpu();

// ---- float64 reference, composed the way nanoGPT writes it:
// split heads (B, T, 3C) → q, k, v (B, H, T, hs); S = q·kᵀ·scale; mask; softmax; P·v; merge.

/** (B, T, 3C) → the `part`-th third as (B, H, T, hs). */
function splitHeads(qkv: Float64Array, B: number, T: number, C: number, H: number, part: number) {
  const hs = C / H;
  const out = new Float64Array(B * H * T * hs);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        for (let d = 0; d < hs; d++) {
          out[((b * H + h) * T + t) * hs + d] = qkv[(b * T + t) * 3 * C + part * C + h * hs + d];
        }
      }
    }
  }
  return out;
}

/** a (M, K) · bᵀ where b is (N, K), at offsets into batched arrays. */
function matmulNT(
  a: Float64Array,
  ao: number,
  b: Float64Array,
  bo: number,
  M: number,
  N: number,
  K: number,
) {
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[ao + i * K + k] * b[bo + j * K + k];
      out[i * N + j] = s;
    }
  }
  return out;
}

/** a (M, K) · b (K, N). */
function matmulNN(a: Float64Array, b: Float64Array, bo: number, M: number, N: number, K: number) {
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[i * K + k] * b[bo + k * N + j];
      out[i * N + j] = s;
    }
  }
  return out;
}

function causalSoftmaxRows(s: Float64Array, T: number): Float64Array {
  const p = new Float64Array(T * T);
  for (let t = 0; t < T; t++) {
    let m = -Infinity;
    for (let j = 0; j <= t; j++) m = Math.max(m, s[t * T + j]);
    let sum = 0;
    for (let j = 0; j <= t; j++) sum += Math.exp(s[t * T + j] - m);
    for (let j = 0; j <= t; j++) p[t * T + j] = Math.exp(s[t * T + j] - m) / sum;
  }
  return p;
}

function refAttention(qkv: Float64Array, B: number, T: number, C: number, H: number) {
  const hs = C / H;
  const q = splitHeads(qkv, B, T, C, H, 0);
  const k = splitHeads(qkv, B, T, C, H, 1);
  const v = splitHeads(qkv, B, T, C, H, 2);
  const y = new Float64Array(B * T * C);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const o = (b * H + h) * T * hs;
      const s = matmulNT(q, o, k, o, T, T, hs).map((x) => x / Math.sqrt(hs));
      const p = causalSoftmaxRows(s, T);
      const yh = matmulNN(p, v, o, T, hs, T); // (T, hs)
      for (let t = 0; t < T; t++) {
        for (let d = 0; d < hs; d++) y[(b * T + t) * C + h * hs + d] = yh[t * hs + d];
      }
    }
  }
  return y;
}

// ---- forward and backward vs the reference; tolerances: forward atol 1e-5 rtol 1e-4
// (f32 dots of length ≤ 13), gradient atol 1e-4 rtol 1e-3 vs central differences in f64.

const CASES: [number, number, number, number][] = [
  // B, T, C, H
  [1, 1, 4, 1],
  [2, 7, 12, 3],
  [1, 13, 12, 1],
  [2, 13, 12, 3],
  [1, 7, 6, 2], // hs = 3
  [3, 5, 20, 4],
  [1, 2, 1, 1], // C = 1
  [1, 33, 8, 2], // 9 row tiles of 4: skipped, diagonal and partial tiles
];

for (const [B, T, C, H] of CASES) {
  Deno.test(`attention() matches the composed reference and finite differences for B=${B} T=${T} C=${C} H=${H}`, async () => {
    await checkOp({
      inputs: [{ shape: [B, T, 3 * C] }],
      gpu: (qkv) => attention(qkv, H),
      ref: (qkv) => refAttention(qkv, B, T, C, H),
      fwd: { atol: 1e-5, rtol: 1e-4 },
      bwd: { atol: 1e-4, rtol: 1e-3 },
      seed: B * 100 + T * 10 + C,
    });
  });
}

Deno.test("attention() stays finite and exact for large scores (softmax max-subtraction)", async () => {
  const [B, T, C, H] = [1, 9, 8, 2];
  const data = randn(B * T * 3 * C, 5, 12); // scores of order 12² / √4 ≈ 70
  await checkOp({
    inputs: [{ shape: [B, T, 3 * C], data }],
    gpu: (qkv) => attention(qkv, H),
    ref: (qkv) => refAttention(qkv, B, T, C, H),
    fwd: { atol: 1e-4, rtol: 1e-4 },
    noGrad: true,
  });
});

Deno.test("attention() makes position 0 attend only to itself and ignores the future", async () => {
  const [B, T, C, H] = [1, 6, 4, 2];
  const a = randn(B * T * 3 * C, 11);
  const b = Float64Array.from(a);
  // Change every q, k, v of the last position: earlier outputs must not move.
  for (let j = 0; j < 3 * C; j++) b[(T - 1) * 3 * C + j] += 5;
  await tidyAsync(async () => {
    const ya = await attention(tensor(a, [B, T, 3 * C]), H).data();
    const yb = await attention(tensor(b, [B, T, 3 * C]), H).data();
    assertAllClose(ya.subarray(0, (T - 1) * C), yb.subarray(0, (T - 1) * C), { atol: 0, rtol: 0 });
    // y[0] = v[0] exactly (one probability of 1).
    assertAllClose(ya.subarray(0, C), a.subarray(2 * C, 3 * C), { atol: 1e-6, rtol: 1e-6 });
  });
});

Deno.test("attention() releases its saved probabilities after backward and under noGrad", async () => {
  const pool = gpu().pool;
  const qkv = tensor(randn(2 * 5 * 24, 3), [2, 5, 24], { requiresGrad: true });
  await gpu().recorder.sync();
  const before = pool.stats().liveBuffers;
  await tidyAsync(async () => {
    const y = attention(qkv, 2);
    // Live: y and P.
    assert.equal(pool.stats().liveBuffers, before + 2);
    backward(y, tensor(randn(2 * 5 * 8, 4), [2, 5, 8]));
    await qkv.grad!.data();
  });
  qkv.grad!.release();
  qkv.grad = null;
  assert.equal(pool.stats().liveBuffers, before);
  const y = noGrad(() => attention(qkv, 2));
  assert.equal(pool.stats().liveBuffers, before + 1, "noGrad forward keeps only y");
  y.release();
  qkv.release();
});

Deno.test("attention() rejects bad shapes and released tensors, naming the op and the shapes", () => {
  tidy(() => {
    const qkv = tensor(new Float32Array(2 * 7 * 36), [2, 7, 36]);
    assert.throws(
      () => attention(qkv, 5),
      (e: Error) =>
        e instanceof ShapeError && /attention/.test(e.message) && /\[2, 7, 36\]/.test(e.message) &&
        /not divisible by nHead/.test(e.message),
    );
    assert.throws(() => attention(qkv, 0), ShapeError);
    assert.throws(() => attention(qkv, 1.5), ShapeError);
    const bad3 = tensor(new Float32Array(2 * 7 * 35), [2, 7, 35]);
    assert.throws(
      () => attention(bad3, 1),
      (e: Error) => e instanceof ShapeError && /attention.*\[2, 7, 35\]/.test(e.message),
    );
    const rank2 = tensor(new Float32Array(7 * 36), [7, 36]);
    assert.throws(
      () => attention(rank2, 3),
      (e: Error) => e instanceof ShapeError && /attention.*\[7, 36\]/.test(e.message),
    );
    const ints = tensor(new Uint32Array(36), [1, 1, 36], { dtype: "u32" });
    assert.throws(
      () => attention(ints, 3),
      (e: Error) => e instanceof ShapeError && /u32/.test(e.message),
    );
    const gone = tensor(new Float32Array(36), [1, 1, 36]);
    gone.release();
    assert.throws(
      () => attention(gone, 3),
      (e: Error) => e instanceof TensorError && /attention.*\[1, 1, 36\]/.test(e.message),
    );
  });
});
