/**
 * Global gradient norm and clip factor vs a float64 reference. Tolerance on
 * the norm: rtol 1e-5 (f32 partial sums over up to ~20k elements).
 */
import assert from "node:assert/strict";
import { AdamW } from "../../../core/optim/adamw.ts";
import { gradClip, gradNorm } from "../../../core/optim/clip.ts";
import { ConfigError, ShapeError } from "../../../core/errors.ts";
import { tidyAsync } from "../../../core/scope.ts";
import { readAll, type Tensor, tensor } from "../../../core/tensor.ts";
import { assertAllClose, randn, setupGpu } from "../../_helpers.ts";

await setupGpu();

// Scalar and vec4 paths, one and several partial workgroups (4096 elements each).
const SHAPES: number[][] = [[1], [7, 13], [33, 65], [16, 4], [5001], [3, 4096], [2, 3, 5]];

function refNorm(grads: Float64Array[]): number {
  let s = 0;
  for (const g of grads) for (const x of g) s += x * x;
  return Math.sqrt(s);
}

function makeParams(shapes: number[][], seed: number, std = 1): [Tensor[], Float64Array[]] {
  const hostGrads: Float64Array[] = [];
  const params = shapes.map((shape, k) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const p = tensor(new Float32Array(n), shape, { requiresGrad: true, name: `p${k}` });
    const gr = randn(n, seed + k, std * (k + 1));
    hostGrads.push(gr);
    p.grad = tensor(gr, shape);
    return p;
  });
  return [params, hostGrads];
}

Deno.test("gradNorm() matches the float64 global L2 norm over odd and large shapes", async () => {
  await tidyAsync(async () => {
    const [params, grads] = makeParams(SHAPES, 11);
    const norm = gradNorm(params);
    assert.deepEqual(norm.shape, [1]);
    const [got] = await readAll([norm]);
    assertAllClose(got, [refNorm(grads)], { atol: 0, rtol: 1e-5 }, "grad norm");
  });
});

Deno.test("gradNorm() of each shape alone matches its reference", async () => {
  await tidyAsync(async () => {
    const [params, grads] = makeParams(SHAPES, 21, 0.1);
    const norms = params.map((p) => gradNorm([p]));
    const got = await readAll(norms);
    got.forEach((g, k) =>
      assertAllClose(g, [refNorm([grads[k]])], { atol: 0, rtol: 1e-5 }, `norm of ${SHAPES[k]}`)
    );
  });
});

Deno.test("gradClip() skips parameters without a gradient; no gradients gives norm 0, factor 1", async () => {
  await tidyAsync(async () => {
    const [params, grads] = makeParams([[7], [9, 3], [12]], 31);
    params[1].grad = null;
    const a = gradClip(params, 1);
    const none = gradClip([params[1]], 1);
    const got = await readAll([a.norm, none.norm, none.factor]);
    assertAllClose(got[0], [refNorm([grads[0], grads[2]])], { atol: 0, rtol: 1e-5 }, "norm");
    assert.deepEqual(Array.from(got.slice(1), (x) => x[0]), [0, 1]);
  });
});

Deno.test("gradClip() factor is maxNorm / (norm + 1e-6) above the max and exactly 1 below", async () => {
  await tidyAsync(async () => {
    const [params, grads] = makeParams(SHAPES, 41);
    const norm = refNorm(grads);
    const above = gradClip(params, norm / 4);
    const below = gradClip(params, norm * 2);
    const unbounded = gradClip(params, Infinity);
    const got = await readAll([above.norm, above.factor, below.factor, unbounded.factor]);
    assertAllClose(got[0], [norm], { atol: 0, rtol: 1e-5 }, "norm");
    assertAllClose(got[1], [norm / 4 / (norm + 1e-6)], { atol: 0, rtol: 1e-5 }, "factor above max");
    assert.equal(got[2][0], 1);
    assert.equal(got[3][0], 1);
  });
});

Deno.test("gradClip() keeps torch's 1e-6 in the factor for tiny norms", async () => {
  await tidyAsync(async () => {
    // norm ~3e-4: the 1e-6 changes the factor by ~0.3%, far above f32 error.
    const [params, grads] = makeParams([[10]], 71, 1e-4);
    const norm = refNorm(grads);
    const { factor } = gradClip(params, norm / 2);
    const [got] = await readAll([factor]);
    assertAllClose(got, [norm / 2 / (norm + 1e-6)], { atol: 0, rtol: 1e-5 }, "factor");
  });
});

Deno.test("gradClip() leaves gradients unchanged and AdamW applies the factor", async () => {
  await tidyAsync(async () => {
    const [params, grads] = makeParams([[5, 3], [8]], 51);
    const norm = refNorm(grads);
    const maxNorm = norm / 3;
    const opt = new AdamW(params, { betas: [0.9, 0.99], weightDecay: 0 });
    const clip = gradClip(params, maxNorm);
    opt.step(1e-3, clip.factor);
    // After one step m = (1 - beta1) * factor * g, so m shows the scaling.
    const got = await readAll([
      ...params.map((p) => p.grad!),
      ...params.map((p) => opt.moments(p).m),
    ]);
    const factor = maxNorm / (norm + 1e-6);
    grads.forEach((g, k) => {
      assertAllClose(got[k], g, { atol: 1e-6, rtol: 1e-6 }, `grad ${k} after clip`);
      assertAllClose(
        got[2 + k],
        g.map((x) => 0.1 * factor * x),
        { atol: 1e-7, rtol: 1e-5 },
        `m ${k}`,
      );
    });
    opt.dispose();
  });
});

Deno.test("gradClip() rejects a non-positive maxNorm and mismatched gradients", async () => {
  await tidyAsync(() => {
    const [params] = makeParams([[4]], 61);
    assert.throws(() => gradClip(params, 0), ConfigError);
    assert.throws(() => gradClip(params, NaN), ConfigError);
    params[0].grad = tensor([1, 2, 3], [3]);
    assert.throws(() => gradClip(params, 1), (e: Error) => {
      assert.ok(e instanceof ShapeError);
      assert.match(e.message, /gradClip: gradient \[3\] does not match p0 \[4\]/);
      return true;
    });
    const g = tensor([1, 2, 3, 4], [4]);
    g.release();
    params[0].grad = g;
    assert.throws(
      () => gradClip(params, 1),
      /gradClip: input 0 \(t\d+ \[4\]\) was used after release/,
    );
    params[0].grad = null;
    return Promise.resolve();
  });
});
