/**
 * Test helpers: GPU setup, close-enough comparisons, and the gradient check
 * every op's backward goes through (GPU gradient vs central finite
 * differences of a float64 TypeScript reference of the op's forward).
 */
import assert from "node:assert/strict";
import { initGpu } from "../gpu/runtime.ts";
import type { Gpu } from "../gpu/runtime.ts";
import { Rng } from "../core/rng.ts";
import { backward } from "../core/tape.ts";
import { tidyAsync } from "../core/scope.ts";
import { readAll, type Tensor, tensor } from "../core/tensor.ts";

/** Opens the GPU; a missing adapter fails the test with the install hint (never skips). */
export function setupGpu(): Promise<Gpu> {
  return initGpu();
}

/** Tolerances of `assertAllClose`: |a - e| <= atol + rtol * |e|. */
export interface Tol {
  atol?: number;
  rtol?: number;
}

/** Asserts elementwise closeness, reporting the max diff and the first bad index. */
export function assertAllClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  { atol = 1e-5, rtol = 1e-4 }: Tol = {},
  what = "values",
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${what}: length ${actual.length} != expected ${expected.length}`);
  }
  let maxDiff = 0;
  let firstBad = -1;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const d = Math.abs(a - e);
    if (!(d <= atol + rtol * Math.abs(e)) && firstBad < 0) firstBad = i;
    if (d > maxDiff || Number.isNaN(d)) maxDiff = Number.isNaN(d) ? NaN : d;
  }
  if (firstBad >= 0) {
    throw new Error(
      `${what} not close (atol ${atol}, rtol ${rtol}): max diff ${maxDiff}, ` +
        `first bad index ${firstBad}: got ${actual[firstBad]}, expected ${expected[firstBad]}`,
    );
  }
}

/** Deterministic normal test data. */
export function randn(n: number, seed: number, std = 1): Float64Array {
  const rng = new Rng(seed);
  return Float64Array.from(rng.normalArray(n, std));
}

/** Deterministic integers in [0, hi). */
export function randint(n: number, hi: number, seed: number): Float64Array {
  const rng = new Rng(seed);
  return Float64Array.from({ length: n }, () => rng.int(hi));
}

/** One input of `checkOp`. */
export interface OpInput {
  /** Shape of the tensor. */
  shape: number[];
  /** Values (as f64); default: seeded normals. */
  data?: ArrayLike<number>;
  /** u32 inputs (indices) get no gradient. */
  dtype?: "f32" | "u32";
  /** Set false to skip the gradient check of an f32 input. */
  grad?: boolean;
}

/** Options of `checkOp`. */
export interface CheckOpOptions {
  /** Inputs, in the order `gpu` and `ref` take them. */
  inputs: OpInput[];
  /** The GPU op under test. */
  gpu: (...ts: Tensor[]) => Tensor;
  /** Float64 reference of the forward. */
  ref: (...xs: Float64Array[]) => Float64Array;
  /** Forward tolerance. */
  fwd?: Tol;
  /** Gradient tolerance (vs finite differences of ref). */
  bwd?: Tol;
  /** Finite-difference step (in float64). */
  eps?: number;
  /** Seed of the data and of the upstream gradient. */
  seed?: number;
  /** Skip the backward check (ops without gradient, e.g. top-k). */
  noGrad?: boolean;
}

/**
 * Checks an op's forward against `ref`, and its backward against central
 * finite differences of `ref` in float64: with a random upstream gradient r,
 * dL/dx_j for L = sum(ref(x) * r) is compared to the GPU's gradient.
 */
export async function checkOp(o: CheckOpOptions): Promise<void> {
  const seed = o.seed ?? 1;
  const xs = o.inputs.map((inp, i) =>
    Float64Array.from(inp.data ?? randn(inp.shape.reduce((a, b) => a * b, 1), seed * 100 + i))
  );
  const expected = o.ref(...xs);
  await tidyAsync(async () => {
    const ts = o.inputs.map((inp, i) =>
      tensor(xs[i], inp.shape, {
        dtype: inp.dtype ?? "f32",
        requiresGrad: !o.noGrad && (inp.dtype ?? "f32") === "f32" && inp.grad !== false,
      })
    );
    const out = o.gpu(...ts);
    const [got] = await readAll([out]);
    assertAllClose(got, expected, o.fwd ?? { atol: 1e-5, rtol: 1e-4 }, "forward");
    if (o.noGrad) return;

    const r = randn(expected.length, seed + 7);
    backward(out, tensor(r, out.shape));
    const withGrad = ts.filter((t) => t.requiresGrad);
    for (const t of withGrad) {
      if (!t.grad) throw new Error(`no gradient reached input ${t.name} ${t.shape}`);
    }
    const grads = await readAll(withGrad.map((t) => t.grad!));
    const eps = o.eps ?? 1e-6;
    let k = 0;
    ts.forEach((t, i) => {
      if (!t.requiresGrad) return;
      const x = xs[i];
      const fd = new Float64Array(x.length);
      for (let j = 0; j < x.length; j++) {
        const x0 = x[j];
        x[j] = x0 + eps;
        const up = dot(o.ref(...xs), r);
        x[j] = x0 - eps;
        const down = dot(o.ref(...xs), r);
        x[j] = x0;
        fd[j] = (up - down) / (2 * eps);
      }
      assertAllClose(grads[k++], fd, o.bwd ?? { atol: 1e-3, rtol: 1e-3 }, `gradient of input ${i}`);
    });
    for (const t of withGrad) t.grad?.release();
  });
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Asserts fn throws an instance of `cls` whose message matches `re`. */
export function throwsLike(fn: () => unknown, cls: new (m: string) => Error, re: RegExp): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e.name}: ${e.message}`);
    assert.match(e.message, re);
    return true;
  });
}
