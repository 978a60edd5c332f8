/**
 * Expert partitions: permutation round trips, adjusted Rand index values,
 * oracle top-k with ties, top-k overlap, expert mass and coverage, and bad
 * input. Pure host code: no GPU needed.
 */
import assert from "node:assert/strict";
import {
  adjustedRandIndex,
  coverage,
  coverageFromMass,
  expertMass,
  invertPermutation,
  labelsFromPermutation,
  oracleTopK,
  permutationFromLabels,
  permuteCols,
  permuteRows,
  topkOverlap,
} from "../../../core/moe/partition.ts";
import { ConfigError, ShapeError } from "../../../core/errors.ts";
import { Rng } from "../../../core/rng.ts";

function randomBalanced(n: number, E: number, rng: Rng): Uint32Array {
  const order = rng.shuffle(Array.from({ length: n }, (_, i) => i));
  const labels = new Uint32Array(n);
  order.forEach((i, p) => labels[i] = p % E);
  return labels;
}

Deno.test("permutationFromLabels() puts expert e at [e·s, (e+1)·s) in original order", () => {
  const labels = [1, 0, 1, 0, 2, 2];
  const perm = permutationFromLabels(labels, 3);
  assert.deepEqual(Array.from(perm), [2, 0, 3, 1, 4, 5]);
  assert.deepEqual(Array.from(invertPermutation(perm)), [1, 3, 0, 2, 4, 5]);
  assert.deepEqual(Array.from(labelsFromPermutation(perm, 3)), labels);
  assert.deepEqual(Array.from(permutationFromLabels([0, 0, 0], 1)), [0, 1, 2]);
  assert.deepEqual(Array.from(permutationFromLabels([2, 0, 1], 3)), [2, 0, 1]);
});

for (const [n, E, cols] of [[64, 8, 5], [12, 1, 3], [12, 12, 1], [30, 5, 7]]) {
  Deno.test(`permutation round trip and contiguous experts (n ${n}, E ${E})`, () => {
    const rng = new Rng(n + E);
    const labels = randomBalanced(n, E, rng);
    const s = n / E;
    const perm = permutationFromLabels(labels, E);
    const inv = invertPermutation(perm);
    for (let i = 0; i < n; i++) assert.equal(inv[perm[i]], i);
    for (let p = 0; p < n; p++) assert.equal(perm[inv[p]], p);
    // Stored rows group the experts contiguously, each in original order.
    for (let p = 0; p < n; p++) assert.equal(labels[inv[p]], Math.floor(p / s));
    for (let p = 1; p < n; p++) {
      if (Math.floor(p / s) === Math.floor((p - 1) / s)) assert.ok(inv[p] > inv[p - 1]);
    }
    assert.deepEqual(labelsFromPermutation(perm, E), labels);
    // Rows (c_fc) and columns (c_proj) move with the neurons and come back bit for bit.
    const W = rng.normalArray(n * cols);
    const Wp = permuteRows(W, n, cols, perm);
    for (let i = 0; i < n; i++) {
      assert.deepEqual(
        Wp.subarray(perm[i] * cols, (perm[i] + 1) * cols),
        W.subarray(i * cols, (i + 1) * cols),
      );
    }
    assert.deepEqual(permuteRows(Wp, n, cols, inv), W);
    const P = rng.normalArray(cols * n);
    const Pp = permuteCols(P, cols, n, perm);
    for (let r = 0; r < cols; r++) {
      for (let i = 0; i < n; i++) assert.equal(Pp[r * n + perm[i]], P[r * n + i]);
    }
    assert.deepEqual(permuteCols(Pp, cols, n, inv), P);
  });
}

Deno.test("permutation helpers reject bad input naming the function and sizes", () => {
  assert.throws(
    () => permutationFromLabels([0, 1, 2, 0, 1], 3),
    (e: Error) =>
      e instanceof ConfigError && /permutationFromLabels: 3 experts.*5 neurons/.test(e.message),
  );
  assert.throws(
    () => permutationFromLabels([0, 0, 0, 1], 2),
    (e: Error) => e instanceof ConfigError && /expert 0 has 3 neurons, expected 2/.test(e.message),
  );
  assert.throws(
    () => permutationFromLabels([0, 2, 0, 1], 2),
    (e: Error) => e instanceof ConfigError && /label 2 of neuron 1/.test(e.message),
  );
  assert.throws(() => permutationFromLabels([0, 1], 0), ConfigError);
  assert.throws(
    () => invertPermutation([0, 2, 2]),
    (e: Error) => e instanceof ConfigError && /not a permutation of 3.*repeated/.test(e.message),
  );
  assert.throws(() => invertPermutation([0, 3, 1]), ConfigError);
  assert.throws(
    () => permuteRows(new Float32Array(6), 3, 3, [0, 1, 2]),
    (e: Error) => e instanceof ShapeError && /permuteRows: 6 values as \[3, 3\]/.test(e.message),
  );
  assert.throws(() => permuteCols(new Float32Array(6), 2, 3, [0, 1]), ShapeError);
});

Deno.test("adjustedRandIndex() known values", () => {
  const a = [0, 0, 1, 1, 2, 2, 2];
  assert.equal(adjustedRandIndex(a, a), 1);
  assert.equal(adjustedRandIndex(a, [5, 5, 3, 3, 0, 0, 0]), 1); // relabelled
  // Hand-computed from the contingency table: Σ C(n_ij, 2) = 1, row pairs 2, column pairs 1,
  // C(4, 2) = 6: (1 − 2/6) / (1.5 − 2/6) = 4/7 (scikit-learn's documented value).
  assert.ok(Math.abs(adjustedRandIndex([0, 0, 1, 1], [0, 0, 1, 2]) - 4 / 7) < 1e-12);
  assert.ok(Math.abs(adjustedRandIndex([0, 0, 1, 1], [0, 1, 0, 1]) - -0.5) < 1e-12);
  // Σ C(n_ij, 2) = 2, rows 6, columns 3, C(6, 2) = 15: (2 − 1.2) / (4.5 − 1.2) = 8/33.
  assert.ok(
    Math.abs(adjustedRandIndex([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]) - 8 / 33) < 1e-12,
  );
  // Symmetric.
  assert.equal(
    adjustedRandIndex([0, 0, 1, 1, 2], [0, 1, 1, 2, 2]),
    adjustedRandIndex([0, 1, 1, 2, 2], [0, 0, 1, 1, 2]),
  );
  // 0/0 limits: identical trivial partitions.
  assert.equal(adjustedRandIndex([0, 0, 0], [4, 4, 4]), 1);
  assert.equal(adjustedRandIndex([0, 1, 2], [2, 0, 1]), 1);
  assert.equal(adjustedRandIndex([3], [1]), 1);
  assert.equal(adjustedRandIndex([0, 0, 0, 0], [0, 0, 1, 1]), 0);
});

Deno.test("adjustedRandIndex() of independent random balanced partitions is near 0", () => {
  const rng = new Rng(5);
  for (const [n, E] of [[16384, 16], [4096, 64]]) {
    const ari = adjustedRandIndex(randomBalanced(n, E, rng), randomBalanced(n, E, rng));
    assert.ok(Math.abs(ari) < 0.005, `ARI ${ari} for n ${n}, E ${E}`);
  }
  assert.throws(
    () => adjustedRandIndex([0, 1], [0]),
    (e: Error) => e instanceof ShapeError && /adjustedRandIndex.*2 vs 1/.test(e.message),
  );
});

Deno.test("oracleTopK() picks the k largest masses, ties to the lower expert", () => {
  const mass = [
    1,
    3,
    3,
    0, // tie between 1 and 2
    2,
    2,
    2,
    2, // all tied
    0,
    0,
    5,
    1,
  ];
  assert.deepEqual(Array.from(oracleTopK(mass, 3, 4, 2)), [1, 2, 0, 1, 2, 3]);
  assert.deepEqual(Array.from(oracleTopK(mass, 3, 4, 1)), [1, 0, 2]);
  assert.deepEqual(Array.from(oracleTopK(mass, 3, 4, 4)), [1, 2, 0, 3, 0, 1, 2, 3, 2, 3, 0, 1]);
  assert.throws(
    () => oracleTopK(mass, 3, 4, 5),
    (e: Error) => e instanceof ConfigError && /oracleTopK: top-k.*\[1, 4\], got 5/.test(e.message),
  );
  assert.throws(() => oracleTopK(mass, 3, 4, 0), ConfigError);
  assert.throws(
    () => oracleTopK(mass, 2, 4, 1),
    (e: Error) => e instanceof ShapeError && /oracleTopK: 12 masses.*\[2, 4\]/.test(e.message),
  );
});

Deno.test("topkOverlap() is the mean share of common experts, order-insensitive", () => {
  const A = Uint32Array.from([0, 1, 2, 3]);
  assert.equal(topkOverlap(A, Uint32Array.from([1, 0, 3, 1]), 2), 0.75);
  assert.equal(topkOverlap(A, A, 2), 1);
  assert.equal(topkOverlap(A, Uint32Array.from([2, 3, 0, 1]), 2), 0);
  assert.throws(
    () => topkOverlap(A, Uint32Array.from([0, 1]), 2),
    (e: Error) => e instanceof ShapeError && /topkOverlap: selections of 4 and 2/.test(e.message),
  );
  assert.throws(() => topkOverlap(A, A, 3), ShapeError);
});

Deno.test("expertMass() sums |activation| per expert and token", () => {
  const acts = Float32Array.from([1, 0, 2, 3, 0, 0, 0, 0, -1, 4, 0.5, 0]);
  const labels = [0, 1, 0, 1];
  assert.deepEqual(Array.from(expertMass(acts, 3, labels, 2)), [3, 3, 0, 0, 1.5, 4]);
  assert.throws(
    () => expertMass(acts, 4, labels, 2),
    (e: Error) => e instanceof ShapeError && /expertMass: 12 activations.*\[4, 4\]/.test(e.message),
  );
  assert.throws(() => expertMass(acts, 3, [0, 1, 0, 2], 2), ConfigError);
});

Deno.test("coverage() known value on a hand example; zero-mass tokens count as 1", () => {
  // 3 tokens, 4 neurons, experts {0, 1} and {2, 3}.
  const acts = Float32Array.from([
    2,
    1,
    0,
    1, // masses [3, 1], picks expert 0 -> 0.75
    1,
    0,
    0.5,
    0.5, // masses [1, 1], picks expert 1 -> 0.5
    0,
    0,
    0,
    0, // no mass -> 1
  ]);
  const labels = [0, 0, 1, 1];
  const sets = Uint32Array.from([0, 1, 1]);
  assert.ok(Math.abs(coverage(acts, 3, labels, 2, sets, 1) - 0.75) < 1e-12);
  const mass = expertMass(acts, 3, labels, 2);
  assert.equal(coverageFromMass(mass, 3, 2, sets, 1), coverage(acts, 3, labels, 2, sets, 1));
  assert.equal(coverage(acts, 3, labels, 2, Uint32Array.from([0, 1, 0, 1, 1, 0]), 2), 1);
});

Deno.test("coverage() is 1 at k = E and the oracle's is the best top-k coverage", () => {
  const rng = new Rng(12);
  const N = 50, n = 32, E = 8;
  const acts = Float32Array.from(rng.normalArray(N * n), (v) => Math.max(0, v)); // ReLU-like
  const labels = randomBalanced(n, E, rng);
  const mass = expertMass(acts, N, labels, E);
  const all = oracleTopK(mass, N, E, E);
  assert.ok(Math.abs(coverage(acts, N, labels, E, all, E) - 1) < 1e-12);
  for (const k of [1, 2, 4]) {
    const oracle = coverage(acts, N, labels, E, oracleTopK(mass, N, E, k), k);
    const random = Uint32Array.from({ length: N * k }, (_, q) => (q % k + rng.int(E - k + 1)) % E);
    const other = coverage(acts, N, labels, E, random, k);
    assert.ok(oracle >= other - 1e-12, `k ${k}: oracle ${oracle} < other ${other}`);
    assert.ok(oracle > 0 && oracle < 1);
  }
});

Deno.test("coverage() rejects bad selections naming the function and sizes", () => {
  const acts = new Float32Array(8);
  const labels = [0, 0, 1, 1];
  assert.throws(
    () => coverage(acts, 2, labels, 2, Uint32Array.from([0]), 1),
    (e: Error) => e instanceof ShapeError && /coverage: 1 expert ids.*\[2, 1\]/.test(e.message),
  );
  assert.throws(
    () => coverage(acts, 2, labels, 2, Uint32Array.from([0, 2]), 1),
    (e: Error) => e instanceof ConfigError && /token 1 selects expert 2/.test(e.message),
  );
  assert.throws(
    () => coverage(acts, 2, labels, 2, Uint32Array.from([0, 1, 0, 1, 0, 1]), 3),
    ConfigError,
  );
});
