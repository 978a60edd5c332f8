/**
 * The warm-vs-fresh partition rule shared by the schedule's monitor and
 * `ssd profile`: the margin's boundary, and `trackedPartition` against plain
 * `balancedKMeans` runs (host distances, no GPU needed).
 */
import assert from "node:assert/strict";
import { balancedKMeans } from "../../../core/moe/balanced_kmeans.ts";
import { DEFAULT_FRESH_MARGIN, freshWins, trackedPartition } from "../../../core/moe/stability.ts";
import { Rng } from "../../../core/rng.ts";

/** n points in d dims around E well-separated centres, cluster i % E. */
function clustered(n: number, d: number, E: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const x = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) x[i * d + j] = (j % E === i % E ? 5 : 0) + 0.3 * rng.normal();
  }
  return x;
}

Deno.test("freshWins() needs a fresh inertia lower by more than the margin", () => {
  assert.equal(DEFAULT_FRESH_MARGIN, 0.01);
  assert.equal(freshWins(98.9, 100), true);
  assert.equal(freshWins(99.5, 100), false, "within the default 1%");
  assert.equal(freshWins(99.5, 100, 0), true, "margin 0: the plain lower inertia");
  assert.equal(freshWins(100, 100, 0), false, "a tie keeps the warm start");
});

Deno.test("trackedPartition() without a previous partition is the fresh k-means run", async () => {
  const x = clustered(64, 8, 4, 1);
  const got = await trackedPartition(x, 64, 8, 4, { seed: 3, distance: "host" });
  const want = await balancedKMeans(x, 64, 8, 4, { seed: 3, normalize: true, distance: "host" });
  assert.equal(got.start, "fresh");
  assert.equal(got.warm_inertia, null);
  assert.deepEqual(got.labels, want.labels);
  assert.equal(got.inertia, want.inertia);
});

Deno.test("trackedPartition() keeps the warm start unless the fresh one wins by the margin", async () => {
  const x = clustered(64, 8, 4, 2);
  const first = await trackedPartition(x, 64, 8, 4, { distance: "host" });
  // Warm from its own result: equal inertia, so the warm start stays.
  const again = await trackedPartition(x, 64, 8, 4, { warm: first.labels, distance: "host" });
  assert.equal(again.start, "warm");
  assert.deepEqual(again.labels, first.labels);
  // A poor reference (round-robin labels are balanced but ignore the clusters):
  // with margin 0.99 the warm run is kept anyway, with margin 0 the better run wins.
  const poor = Uint32Array.from({ length: 64 }, (_, i) => Math.floor(i / 16));
  const run = (m: number) =>
    trackedPartition(x, 64, 8, 4, { warm: poor, fresh_margin: m, iters: 1, distance: "host" });
  const strict = await run(0.99);
  const plain = await run(0);
  assert.equal(strict.start, "warm");
  assert.equal(
    plain.start,
    freshWins(plain.fresh_inertia, plain.warm_inertia!, 0) ? "fresh" : "warm",
  );
  assert.equal(plain.inertia, Math.min(plain.fresh_inertia, plain.warm_inertia!));
});
