import assert from "node:assert/strict";
import { crossEntropy } from "../../../core/ops/cross_entropy.ts";
import { ShapeError, TensorError } from "../../../core/errors.ts";
import { tidy, tidyAsync } from "../../../core/scope.ts";
import { backward, noGrad } from "../../../core/tape.ts";
import { readAll, tensor } from "../../../core/tensor.ts";
import { gpu } from "../../../gpu/runtime.ts";
import { checkOp, randint, randn, setupGpu } from "../../_helpers.ts";

await setupGpu();

// ---- float64 reference: the composed path, log-softmax then mean NLL.

function logSoftmaxRows(x: Float64Array, V: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let o = 0; o < x.length; o += V) {
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, x[o + v]);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(x[o + v] - m);
    const lse = m + Math.log(s);
    for (let v = 0; v < V; v++) out[o + v] = x[o + v] - lse;
  }
  return out;
}

function nllMean(logp: Float64Array, targets: Float64Array, V: number): number {
  let s = 0;
  targets.forEach((t, n) => s -= logp[n * V + t]);
  return s / targets.length;
}

function refCrossEntropy(x: Float64Array, targets: Float64Array, V: number): Float64Array {
  return Float64Array.of(nllMean(logSoftmaxRows(x, V), targets, V));
}

// Tolerances: loss atol 1e-5 rtol 1e-5 (f32 sums of ≤ 256 exps); gradient atol 1e-6
// rtol 1e-4 vs f64 central differences (entries are (p − onehot)·r/N, of order 1/N).
const FWD = { atol: 1e-5, rtol: 1e-5 };
const BWD = { atol: 1e-6, rtol: 1e-4 };

const CASES: number[][] = [
  [7, 13],
  [1, 1], // V = 1: loss 0, gradient 0
  [1, 65],
  [33, 65],
  [4, 256],
  [2, 7, 65],
  [1, 1, 13],
  [3, 13, 65],
];

for (const shape of CASES) {
  const V = shape[shape.length - 1];
  const lead = shape.slice(0, -1);
  const N = lead.reduce((a, b) => a * b, 1);
  Deno.test(`crossEntropy() matches log-softmax + NLL and finite differences for logits [${shape}]`, async () => {
    await checkOp({
      inputs: [
        { shape, data: randn(N * V, N + V, 2) },
        { shape: lead, dtype: "u32", data: randint(N, V, 7 * N + V) },
      ],
      gpu: (x, t) => {
        const loss = crossEntropy(x, t);
        assert.deepEqual(loss.shape, []);
        return loss;
      },
      ref: (x, t) => refCrossEntropy(x, t, V),
      fwd: FWD,
      bwd: BWD,
    });
  });
}

Deno.test("crossEntropy() is stable for large logits (max-subtracted logsumexp)", async () => {
  const [N, V] = [5, 65];
  await checkOp({
    inputs: [
      { shape: [N, V], data: randn(N * V, 3, 60) }, // exp(±180) overflows f32 without the max
      { shape: [N], dtype: "u32", data: randint(N, V, 4) },
    ],
    gpu: crossEntropy,
    ref: (x, t) => refCrossEntropy(x, t, V),
    fwd: { atol: 1e-4, rtol: 1e-5 },
    bwd: { atol: 1e-5, rtol: 1e-4 },
  });
});

Deno.test("crossEntropy() gives a bit-identical loss and gradient on every run", async () => {
  const [N, V] = [300, 65];
  const x = randn(N * V, 8);
  const t = randint(N, V, 9);
  const run = () =>
    tidyAsync(async () => {
      const logits = tensor(x, [N, V], { requiresGrad: true });
      const loss = crossEntropy(logits, tensor(t, [N], { dtype: "u32" }));
      backward(loss);
      return await readAll([loss, logits.grad!]);
    });
  const [a, b] = [await run(), await run()];
  assert.deepEqual(a, b);
});

Deno.test("crossEntropy() turns an out-of-range target into a NaN loss and a NaN gradient row", async () => {
  const [N, V] = [3, 13];
  await tidyAsync(async () => {
    const logits = tensor(randn(N * V, 1), [N, V], { requiresGrad: true });
    const loss = crossEntropy(logits, tensor([2, 13, 0], [N], { dtype: "u32" }));
    backward(loss);
    const [l, g] = await readAll([loss, logits.grad!]);
    assert.ok(Number.isNaN(l[0]), `loss ${l[0]} should be NaN`);
    assert.ok(g.subarray(V, 2 * V).every(Number.isNaN), "row 1 gradient should be NaN");
    assert.ok([...g.subarray(0, V), ...g.subarray(2 * V)].every(Number.isFinite));
  });
});

Deno.test("crossEntropy() releases its saved logsumexp after backward and under noGrad", async () => {
  const pool = gpu().pool;
  const logits = tensor(randn(4 * 7, 2), [4, 7], { requiresGrad: true });
  const targets = tensor([0, 6, 3, 3], [4], { dtype: "u32" });
  await gpu().recorder.sync();
  const before = pool.stats().liveBuffers;
  await tidyAsync(async () => {
    const loss = crossEntropy(logits, targets);
    assert.equal(pool.stats().liveBuffers, before + 2, "loss and lse");
    backward(loss);
    await logits.grad!.data();
  });
  logits.grad!.release();
  logits.grad = null;
  assert.equal(pool.stats().liveBuffers, before);
  const loss = noGrad(() => crossEntropy(logits, targets));
  assert.equal(pool.stats().liveBuffers, before + 1, "noGrad keeps only the loss");
  loss.release();
  logits.release();
  targets.release();
});

function throwsNaming(fn: () => unknown, cls: typeof ShapeError, ...patterns: RegExp[]): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e.name}: ${e.message}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

Deno.test("crossEntropy() rejects mismatched targets, bad dtypes and released tensors", () => {
  tidy(() => {
    const logits = tensor(new Float32Array(2 * 7 * 65), [2, 7, 65]);
    const t26 = tensor(new Uint32Array(12), [2, 6], { dtype: "u32" });
    const t14 = tensor(new Uint32Array(14), [14], { dtype: "u32" });
    const f27 = tensor(new Float32Array(14), [2, 7]);
    throwsNaming(
      () => crossEntropy(logits, t26),
      ShapeError,
      /^crossEntropy: targets \[2, 6\]/,
      /\[2, 7, 65\]/,
    );
    throwsNaming(
      () => crossEntropy(logits, t14),
      ShapeError,
      /^crossEntropy: targets \[14\]/,
      /\[2, 7, 65\]/,
    );
    throwsNaming(
      () => crossEntropy(logits, f27),
      ShapeError,
      /^crossEntropy: targets must be u32/,
      /\[2, 7\]/,
    );
    throwsNaming(
      () => crossEntropy(logits.view([910]), t14),
      ShapeError,
      /^crossEntropy: logits/,
      /\[910\]/,
    );
    const empty = tensor(new Float32Array(0), [0, 65]);
    throwsNaming(
      () => crossEntropy(empty, tensor([], [0], { dtype: "u32" })),
      ShapeError,
      /no rows/,
      /\[0, 65\]/,
    );
    const gone = tensor(new Float32Array(14 * 65), [14, 65]);
    gone.release();
    throwsNaming(
      () => crossEntropy(gone, t14),
      TensorError,
      /^crossEntropy: input 0/,
      /\[14, 65\]/,
    );
  });
});
