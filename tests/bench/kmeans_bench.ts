/**
 * Balanced k-means wall time (not a test):
 *
 *   deno run -A tests/bench/kmeans_bench.ts [--reps N] [--json]
 *
 * Shapes: n = 512, d = 128, E = 16 (the default model's FFN: d_ff 512 rows
 * of c_fc, d_model 128) and n = 2048, d = 512, E = 64. Points are a
 * seeded mixture of 2E random directions with noise as large as the signal
 * (overlapping clusters, so the iterations do real work; plain normals in
 * high dimension converge in two steps), 50 iterations max. For each shape and distance path (host, GPU) it times a
 * fresh run and a warm run with `keepBest` (what the SSD monitor does: warm
 * from the previous partition of slightly perturbed weights, plus a fresh
 * start). Reports the best of `--reps` (default 3) and the iterations
 * of the kept run.
 */
import { balancedKMeans, type DistanceDevice } from "../../core/moe/balanced_kmeans.ts";
import { Rng } from "../../core/rng.ts";
import { initGpu } from "../../gpu/runtime.ts";

const SHAPES: [number, number, number][] = [[512, 128, 16], [2048, 512, 64]];
const args = Deno.args;
const json = args.includes("--json");
const repsAt = args.indexOf("--reps");
const reps = repsAt >= 0 ? Number(args[repsAt + 1]) : 3;

const g = await initGpu();
const rows: Record<string, unknown>[] = [];
for (const [n, d, E] of SHAPES) {
  const rng = new Rng(n + d + E);
  const centres = rng.normalArray(2 * E * d);
  const points = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const c = rng.int(2 * E);
    for (let k = 0; k < d; k++) points[i * d + k] = centres[c * d + k] + rng.normal();
  }
  // The "next checkpoint": the same rows plus 10% noise, warm-started from the first partition.
  const moved = points.map((v) => v + 0.1 * rng.normal());
  for (const distance of ["host", "gpu"] as DistanceDevice[]) {
    const prev = await balancedKMeans(points, n, d, E, { seed: 1, distance }); // also warms up
    for (const mode of ["fresh", "warm+fresh"]) {
      let best = Infinity;
      let r = prev;
      for (let i = 0; i < reps; i++) {
        r = await balancedKMeans(moved, n, d, E, {
          seed: 2,
          distance,
          warm: mode === "fresh" ? undefined : prev.labels,
        });
        best = Math.min(best, r.ms);
      }
      rows.push({
        n,
        d,
        E,
        distance,
        mode,
        ms: Math.round(best),
        // Only a fresh run's time is one run's iterations; warm+fresh times two runs.
        ms_per_iter: mode === "fresh" ? Number((best / r.iters).toFixed(1)) : null,
        iters: r.iters,
        converged: r.converged,
        start: r.start,
        inertia: Number(r.inertia.toFixed(3)),
      });
    }
  }
}
if (json) console.log(JSON.stringify({ adapter: g.dev.summary.name, rows }, null, 2));
else {
  console.log("n     d    E   distance  mode         ms      iters  ms/iter  start  inertia");
  for (const r of rows) {
    console.log(
      `${String(r.n).padEnd(5)} ${String(r.d).padEnd(4)} ${String(r.E).padEnd(3)} ` +
        `${String(r.distance).padEnd(9)} ${String(r.mode).padEnd(12)} ${
          String(r.ms).padStart(6)
        }  ` +
        `${String(r.iters).padStart(5)}  ${String(r.ms_per_iter ?? "-").padStart(7)}  ` +
        `${String(r.start).padEnd(6)} ${r.inertia}`,
    );
  }
}
