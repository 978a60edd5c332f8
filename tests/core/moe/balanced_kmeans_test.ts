/**
 * Balanced k-means: exact cluster sizes, planted-cluster recovery, inertia
 * against random balanced partitions and the warm start, determinism, the
 * warm start's fixed point, GPU vs host distances, co-activation features,
 * and bad input.
 */
import assert from "node:assert/strict";
import {
  balancedAssign,
  balancedKMeans,
  coactFeatures,
  GPU_MIN_MACS,
} from "../../../core/moe/balanced_kmeans.ts";
import { adjustedRandIndex } from "../../../core/moe/partition.ts";
import { ConfigError, ShapeError } from "../../../core/errors.ts";
import { Rng } from "../../../core/rng.ts";
import { setupGpu } from "../../_helpers.ts";

await setupGpu();

/** n points in d dims, standard normal, as f32. */
function gaussian(n: number, d: number, seed: number): Float32Array {
  return new Rng(seed).normalArray(n * d);
}

/** E groups of s points around random unit centres (noise std `spread`), rows shuffled. */
function planted(E: number, s: number, d: number, seed: number, spread = 0.05) {
  const rng = new Rng(seed);
  const centres = rng.normalArray(E * d);
  for (let e = 0; e < E; e++) {
    let ss = 0;
    for (let k = 0; k < d; k++) ss += centres[e * d + k] ** 2;
    for (let k = 0; k < d; k++) centres[e * d + k] /= Math.sqrt(ss);
  }
  const order = rng.shuffle(Array.from({ length: E * s }, (_, i) => i));
  const n = E * s;
  const points = new Float32Array(n * d);
  const truth = new Uint32Array(n);
  order.forEach((src, i) => {
    const e = Math.floor(src / s);
    truth[i] = e;
    for (let k = 0; k < d; k++) points[i * d + k] = centres[e * d + k] + spread * rng.normal();
  });
  return { points, truth, n };
}

function normalized(points: Float32Array, n: number, d: number): Float64Array {
  const x = Float64Array.from(points);
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let k = 0; k < d; k++) ss += x[i * d + k] ** 2;
    for (let k = 0; k < d; k++) x[i * d + k] /= ss > 0 ? Math.sqrt(ss) : 1;
  }
  return x;
}

/** Reference inertia of a labelling: Σ ‖x − mean of its cluster‖², float64. */
function inertiaRef(x: Float64Array, labels: ArrayLike<number>, n: number, d: number, E: number) {
  const c = new Float64Array(E * d);
  const cnt = new Float64Array(E);
  for (let i = 0; i < n; i++) {
    cnt[labels[i]]++;
    for (let k = 0; k < d; k++) c[labels[i] * d + k] += x[i * d + k];
  }
  for (let e = 0; e < E; e++) for (let k = 0; k < d; k++) c[e * d + k] /= cnt[e];
  let total = 0;
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < d; k++) total += (x[i * d + k] - c[labels[i] * d + k]) ** 2;
  }
  return total;
}

function randomBalanced(n: number, E: number, rng: Rng): Uint32Array {
  const order = rng.shuffle(Array.from({ length: n }, (_, i) => i));
  const labels = new Uint32Array(n);
  order.forEach((i, p) => labels[i] = p % E);
  return labels;
}

function assertBalanced(labels: Uint32Array, n: number, E: number): void {
  assert.equal(labels.length, n);
  const count = new Array(E).fill(0);
  for (const l of labels) {
    assert.ok(l < E, `label ${l} out of range for E = ${E}`);
    count[l]++;
  }
  assert.deepEqual(count, new Array(E).fill(n / E), `cluster sizes for n = ${n}, E = ${E}`);
}

function cost(D: Float64Array, labels: ArrayLike<number>, n: number, E: number): number {
  let c = 0;
  for (let i = 0; i < n; i++) c += D[i * E + labels[i]];
  return c;
}

/** Asserts no exchange of two points of different clusters lowers Σ D by more than `tol`. */
function assertSwapStable(D: Float64Array, labels: Uint32Array, n: number, E: number, tol: number) {
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const a = labels[i], b = labels[j];
      if (a === b) continue;
      const gain = D[i * E + a] + D[j * E + b] - D[i * E + b] - D[j * E + a];
      assert.ok(gain <= tol, `swapping points ${i} and ${j} gains ${gain}`);
    }
  }
}

Deno.test("balancedAssign() swaps what the greedy pass gets wrong", () => {
  // Greedy takes (0 -> 0) at distance 0 and leaves point 1 the cost 10; the swap costs 1.1.
  assert.deepEqual(Array.from(balancedAssign(Float64Array.from([0, 1, 0.1, 10]), 2, 2)), [1, 0]);
});

Deno.test("balancedAssign() is balanced and swap-stable on random distances, optimal for E = 2", () => {
  const rng = new Rng(31);
  for (const [n, E] of [[24, 4], [30, 6], [16, 16], [10, 1], [40, 2], [33, 3]]) {
    const D = Float64Array.from(rng.uniformArray(n * E, 0, 4));
    const labels = balancedAssign(D, n, E);
    assertBalanced(labels, n, E);
    assertSwapStable(D, labels, n, E, 1e-5);
    let bestRandom = Infinity;
    for (let t = 0; t < 20; t++) {
      bestRandom = Math.min(bestRandom, cost(D, randomBalanced(n, E, rng), n, E));
    }
    assert.ok(cost(D, labels, n, E) <= bestRandom);
    if (E === 2) {
      // Exact optimum for two clusters: the n/2 points with the smallest D[i,0] − D[i,1] go to 0.
      const byDiff = Array.from({ length: n }, (_, i) => i)
        .sort((i, j) => (D[i * 2] - D[i * 2 + 1]) - (D[j * 2] - D[j * 2 + 1]));
      const opt = new Uint32Array(n);
      byDiff.forEach((i, r) => opt[i] = r < n / 2 ? 0 : 1);
      assert.ok(Math.abs(cost(D, labels, n, E) - cost(D, opt, n, E)) < 1e-9);
    }
  }
});

Deno.test("balancedAssign() keeps the previous labels on a tie and never costs more than them", () => {
  const n = 12, E = 3;
  const prev = randomBalanced(n, E, new Rng(4));
  assert.deepEqual(balancedAssign(new Float64Array(n * E), n, E, prev), prev);
  // Without prev, all-equal distances go in point order: the first s points to cluster 0, ...
  assert.deepEqual(
    Array.from(balancedAssign(new Float64Array(n * E), n, E)),
    [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2],
  );
  const rng = new Rng(8);
  for (let t = 0; t < 20; t++) {
    const D = Float64Array.from(rng.uniformArray(n * E));
    const p = randomBalanced(n, E, rng);
    assert.ok(cost(D, balancedAssign(D, n, E, p), n, E) <= cost(D, p, n, E) + 1e-12);
  }
});

Deno.test("balancedAssign() rejects bad distances and labels naming the function", () => {
  assert.throws(
    () => balancedAssign(new Float64Array(5), 2, 2),
    (e: Error) =>
      e instanceof ShapeError && /balancedAssign: 5 distances.*\[2, 2\]/.test(e.message),
  );
  assert.throws(
    () => balancedAssign(Float64Array.from([0, -1, 0, 0]), 2, 2),
    (e: Error) => e instanceof ConfigError && /distance \[0, 1\] is -1/.test(e.message),
  );
  assert.throws(() => balancedAssign(Float64Array.from([0, NaN, 0, 0]), 2, 2), ConfigError);
  assert.throws(() => balancedAssign(new Float64Array(6), 3, 2), ConfigError);
  assert.throws(
    () => balancedAssign(new Float64Array(4), 2, 2, Uint32Array.from([1, 1])),
    (e: Error) => e instanceof ConfigError && /prev is not balanced/.test(e.message),
  );
});

for (
  const [n, E, d] of [[12, 1, 5], [12, 12, 5], [12, 3, 5], [30, 5, 7], [64, 8, 3], [7, 7, 2], [
    9,
    1,
    4,
  ], [96, 16, 9]]
) {
  Deno.test(`balancedKMeans() gives every cluster exactly n/E points (n ${n}, E ${E}, d ${d})`, async () => {
    const points = gaussian(n, d, n * 31 + E);
    const r = await balancedKMeans(points, n, d, E, { seed: 3, distance: "host" });
    assertBalanced(r.labels, n, E);
    assert.equal(r.centroids.length, E * d);
    assert.ok(r.iters >= 1 && r.iters <= 50);
    // The reported inertia is that of the labels against their own cluster means.
    const ref = inertiaRef(normalized(points, n, d), r.labels, n, d, E);
    assert.ok(Math.abs(r.inertia - ref) <= 1e-6 * (1 + ref), `inertia ${r.inertia} vs ${ref}`);
  });
}

Deno.test("balancedKMeans() with iters 1 still returns a balanced partition", async () => {
  const r = await balancedKMeans(gaussian(40, 6, 1), 40, 6, 8, { iters: 1, distance: "host" });
  assertBalanced(r.labels, 40, 8);
  assert.equal(r.iters, 1);
});

for (const [E, s, d, seed] of [[4, 8, 8, 1], [8, 16, 16, 2], [16, 4, 32, 3], [2, 50, 3, 4]]) {
  Deno.test(`balancedKMeans() recovers ${E} planted clusters of ${s} points exactly (d ${d})`, async () => {
    const { points, truth, n } = planted(E, s, d, seed);
    const r = await balancedKMeans(points, n, d, E, { seed, distance: "host" });
    assertBalanced(r.labels, n, E);
    assert.equal(adjustedRandIndex(r.labels, truth), 1);
    assert.ok(r.converged);
  });
}

Deno.test("balancedKMeans() recovers planted clusters on the GPU distance path", async () => {
  const { points, truth, n } = planted(8, 16, 24, 9);
  const r = await balancedKMeans(points, n, 24, 8, { seed: 1, distance: "gpu" });
  assert.equal(r.device, "gpu");
  assert.equal(adjustedRandIndex(r.labels, truth), 1);
});

for (const [n, d, E] of [[64, 8, 4], [120, 16, 8], [96, 5, 12]]) {
  Deno.test(`balancedKMeans() inertia beats random balanced partitions (n ${n}, d ${d}, E ${E})`, async () => {
    const points = gaussian(n, d, n + d);
    const x = normalized(points, n, d);
    const r = await balancedKMeans(points, n, d, E, { seed: 5, distance: "host" });
    const rng = new Rng(77);
    let bestRandom = Infinity;
    for (let t = 0; t < 30; t++) {
      bestRandom = Math.min(bestRandom, inertiaRef(x, randomBalanced(n, E, rng), n, d, E));
    }
    assert.ok(r.inertia <= bestRandom, `k-means ${r.inertia} vs best random ${bestRandom}`);
  });
}

Deno.test("balancedKMeans() with keepBest keeps the lower of warm and fresh, no worse than the warm labels", async () => {
  const n = 80, d = 10, E = 8;
  const points = gaussian(n, d, 11);
  const x = normalized(points, n, d);
  const warm = randomBalanced(n, E, new Rng(2));
  const r = await balancedKMeans(points, n, d, E, { seed: 4, warm, distance: "host" });
  assertBalanced(r.labels, n, E);
  assert.ok(r.warmInertia !== null && r.freshInertia !== null);
  assert.equal(r.inertia, Math.min(r.warmInertia!, r.freshInertia!));
  assert.equal(r.start, r.warmInertia! <= r.freshInertia! ? "warm" : "fresh");
  assert.ok(r.inertia <= inertiaRef(x, warm, n, d, E));
  // The warm run alone never ends above where it started (the assignment step never raises inertia).
  const w = await balancedKMeans(points, n, d, E, { warm, keepBest: false, distance: "host" });
  assert.equal(w.start, "warm");
  assert.equal(w.freshInertia, null);
  assert.ok(w.inertia <= inertiaRef(x, warm, n, d, E) + 1e-9);
});

Deno.test("balancedKMeans() result is swap-stable against its own centroids", async () => {
  const n = 96, d = 12, E = 8;
  const points = gaussian(n, d, 17);
  const x = normalized(points, n, d);
  const r = await balancedKMeans(points, n, d, E, { seed: 1, distance: "host" });
  assert.ok(r.converged);
  const D = new Float64Array(n * E);
  for (let i = 0; i < n; i++) {
    for (let e = 0; e < E; e++) {
      for (let k = 0; k < d; k++) D[i * E + e] += (x[i * d + k] - r.centroids[e * d + k]) ** 2;
    }
  }
  assertSwapStable(D, r.labels, n, E, 1e-4);
});

Deno.test("balancedKMeans() is deterministic for a seed", async () => {
  const points = gaussian(96, 12, 21);
  const a = await balancedKMeans(points, 96, 12, 8, { seed: 9, distance: "host" });
  const b = await balancedKMeans(points, 96, 12, 8, { seed: 9, distance: "host" });
  assert.deepEqual(a.labels, b.labels);
  assert.deepEqual(a.centroids, b.centroids);
  assert.equal(a.inertia, b.inertia);
  assert.equal(a.iters, b.iters);
});

Deno.test("balancedKMeans() warm-started from its own answer converges at once", async () => {
  const points = gaussian(128, 16, 8);
  const first = await balancedKMeans(points, 128, 16, 16, { seed: 2, distance: "host" });
  assert.ok(first.converged);
  const again = await balancedKMeans(points, 128, 16, 16, {
    warm: first.labels,
    keepBest: false,
    distance: "host",
  });
  assert.equal(again.iters, 1);
  assert.ok(again.converged);
  assert.deepEqual(again.labels, first.labels);
  assert.equal(again.inertia, first.inertia);
  // With keepBest the fresh run (same seed, same answer) ties, and the warm start wins the tie.
  const best = await balancedKMeans(points, 128, 16, 16, {
    seed: 2,
    warm: first.labels,
    distance: "host",
  });
  assert.equal(best.start, "warm");
  assert.deepEqual(best.labels, first.labels);
});

Deno.test("balancedKMeans() normalises rows: positive row scales do not change the partition", async () => {
  const n = 48, d = 6;
  const points = gaussian(n, d, 4);
  const scaled = points.map((v, i) => v * (1 + (Math.floor(i / d) % 5)));
  const a = await balancedKMeans(points, n, d, 6, { seed: 1, distance: "host" });
  const b = await balancedKMeans(scaled, n, d, 6, { seed: 1, distance: "host" });
  assert.deepEqual(a.labels, b.labels);
  // Without normalisation the scales matter to the inertia.
  const c = await balancedKMeans(scaled, n, d, 6, { seed: 1, normalize: false, distance: "host" });
  assertBalanced(c.labels, n, 6);
  assert.ok(c.inertia > a.inertia);
});

Deno.test("balancedKMeans() GPU and host distance paths give the same partition", async () => {
  for (const [n, d, E, seed] of [[256, 64, 8, 1], [192, 33, 12, 2], [128, 128, 32, 3]]) {
    const points = gaussian(n, d, seed);
    const host = await balancedKMeans(points, n, d, E, { seed, distance: "host" });
    const dev = await balancedKMeans(points, n, d, E, { seed, distance: "gpu" });
    assert.equal(host.device, "host");
    assert.equal(dev.device, "gpu");
    assert.deepEqual(dev.labels, host.labels, `labels differ for n ${n}, d ${d}, E ${E}`);
    assert.equal(dev.iters, host.iters);
    assert.ok(Math.abs(dev.inertia - host.inertia) <= 1e-9 * host.inertia);
  }
});

Deno.test("balancedKMeans() auto picks the GPU above GPU_MIN_MACS and the host below", async () => {
  const small = await balancedKMeans(gaussian(64, 16, 1), 64, 16, 4);
  assert.equal(small.device, "host");
  const n = 512, d = 64, E = 64; // 2^21 multiply-adds
  assert.ok(n * d * E > GPU_MIN_MACS);
  const big = await balancedKMeans(gaussian(n, d, 2), n, d, E, { iters: 3 });
  assert.equal(big.device, "gpu");
  assertBalanced(big.labels, n, E);
});

Deno.test("balancedKMeans() rejects bad input naming the function and sizes", async () => {
  const p = gaussian(12, 3, 1);
  await assert.rejects(
    () => balancedKMeans(p, 12, 3, 5),
    (e: Error) => e instanceof ConfigError && /balancedKMeans.*12 points.*5 equal/.test(e.message),
  );
  await assert.rejects(() => balancedKMeans(p, 12, 3, 0), ConfigError);
  await assert.rejects(() => balancedKMeans(p, 12, 3, 24), ConfigError);
  await assert.rejects(
    () => balancedKMeans(p, 12, 4, 3),
    (e: Error) =>
      e instanceof ShapeError && /balancedKMeans: 36 values.*12 points.*48/.test(e.message),
  );
  await assert.rejects(() => balancedKMeans(p, 12, 3, 3, { iters: 0 }), ConfigError);
  await assert.rejects(
    () => balancedKMeans(p, 12, 3, 3, { warm: [0, 1, 2] }),
    (e: Error) => e instanceof ShapeError && /3 labels for 12 points/.test(e.message),
  );
  await assert.rejects(
    () => balancedKMeans(p, 12, 3, 3, { warm: [0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2] }),
    (e: Error) => e instanceof ConfigError && /cluster 0 has 5 points, expected 4/.test(e.message),
  );
  await assert.rejects(
    () => balancedKMeans(p, 12, 3, 3, { warm: [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3] }),
    (e: Error) => e instanceof ConfigError && /label 3 of point 11/.test(e.message),
  );
  const bad = p.slice();
  bad[7] = NaN;
  await assert.rejects(
    () => balancedKMeans(bad, 12, 3, 3),
    (e: Error) => e instanceof ConfigError && /point 2 has a non-finite/.test(e.message),
  );
});

/** Activations (N, dff): each token picks one of E neuron groups, whose neurons fire with p 0.9. */
function coactData(nTokens: number, dff: number, E: number, seed: number) {
  const rng = new Rng(seed);
  const s = dff / E;
  const neuronGroup = randomBalanced(dff, E, rng);
  const acts = new Float32Array(nTokens * dff);
  for (let t = 0; t < nTokens; t++) {
    const g = rng.int(E);
    for (let j = 0; j < dff; j++) {
      const p = neuronGroup[j] === g ? 0.9 : 0.05;
      acts[t * dff + j] = rng.uniform() < p ? 0.1 + rng.uniform() : 0;
    }
  }
  return { acts, neuronGroup, s };
}

for (const nTokens of [100, 600]) {
  Deno.test(`coactFeatures() + balancedKMeans() recover co-firing groups (${nTokens} tokens)`, async () => {
    const dff = 48, E = 6;
    const { acts, neuronGroup } = coactData(nTokens, dff, E, nTokens);
    const f = coactFeatures(acts, nTokens, dff);
    const dim = f.length / dff;
    assert.equal(dim, Math.min(nTokens, 256));
    const r = await balancedKMeans(f, dff, dim, E, { seed: 1, distance: "host" });
    assert.equal(adjustedRandIndex(r.labels, neuronGroup), 1);
  });
}

Deno.test("coactFeatures() gives identical rows to neurons that fire on the same tokens", () => {
  const nTokens = 300, dff = 4;
  const rng = new Rng(3);
  const acts = new Float32Array(nTokens * dff);
  for (let t = 0; t < nTokens; t++) {
    const on = rng.uniform() < 0.5;
    acts[t * dff + 0] = on ? 1 + rng.uniform() : 0; // neurons 0 and 2 co-fire, values differ
    acts[t * dff + 2] = on ? 5 * rng.uniform() + 0.01 : -0.3;
    acts[t * dff + 1] = rng.uniform() < 0.5 ? 1 : 0;
  }
  const f = coactFeatures(acts, nTokens, dff, { dim: 64, seed: 7 });
  assert.deepEqual(f.subarray(0, 64), f.subarray(128, 192));
  assert.notDeepEqual(f.subarray(0, 64), f.subarray(64, 128));
  assert.ok(f.subarray(192, 256).every((v) => v === 0), "a dead neuron has a zero row");
  // Short token axes are used as is: row j is the firing indicator of neuron j.
  const g = coactFeatures(acts.subarray(0, 10 * dff), 10, dff);
  for (let t = 0; t < 10; t++) assert.equal(g[0 * 10 + t], acts[t * dff] > 0 ? 1 : 0);
  // binary: false keeps the values.
  const h = coactFeatures(acts.subarray(0, 10 * dff), 10, dff, { binary: false });
  for (let t = 0; t < 10; t++) assert.equal(h[2 * 10 + t], acts[t * dff + 2]);
});

Deno.test("coactFeatures() rejects mismatched sizes naming the function", () => {
  assert.throws(
    () => coactFeatures(new Float32Array(10), 3, 4),
    (e: Error) =>
      e instanceof ShapeError && /coactFeatures: 10 activations.*\[3, 4\]/.test(e.message),
  );
  assert.throws(() => coactFeatures(new Float32Array(12), 3, 4, { dim: 0 }), ConfigError);
  assert.throws(() => coactFeatures(new Float32Array(0), 0, 4), ConfigError);
});
