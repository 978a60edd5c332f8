/**
 * Balanced k-means: the expert partition (E experts of d_ff/E neurons each).
 *
 * Partitions n points (rows of an (n, d) row-major matrix, by default
 * L2-normalised first, e.g. the d_ff rows of `c_fc.weight`) into E clusters
 * of exactly s = n/E points each, minimising the inertia
 * Σ_i ‖x_i − c_{label(i)}‖² with c_e the mean of cluster e.
 *
 * One iteration:
 * 1. distances D[i, e] = ‖x_i‖² + ‖c_e‖² − 2·x_i·c_e; the dot products are a
 *    matmul (n, d)·(E, d)ᵀ, run on the GPU when n·E·d > `GPU_MIN_MACS`
 *    (one read-back per iteration), else on the host (float64 sums). Both
 *    paths round the dot to f32, so they differ only by f32 accumulation
 *    error; they give the same partition unless two choices are within that
 *    noise (gains below `SWAP_REL_TOL` are ignored for this reason);
 * 2. balanced assignment: greedy by distance with capacity (take the
 *    cheapest (point, cluster) pair whose point is free and whose cluster
 *    has room; ties to the lower point, then the lower cluster), then a
 *    swap pass that exchanges two points of different clusters while that
 *    lowers Σ D (best swap per cluster pair, largest gain first). The same
 *    swap pass also runs from the previous labels, and the cheaper of the
 *    two is kept (previous on a near-tie): the assignment step then never
 *    raises the inertia, so the loop cannot oscillate;
 * 3. centroid update: the mean of each cluster's members.
 * It stops when the labels no longer change, or after `iters` assignments.
 * Step 2 is exported as `balancedAssign`.
 *
 * Seeding is k-means++ from a seeded `Rng`; a warm start takes the centroids
 * of a previous partition instead, and with `keepBest` both are run and the
 * lower inertia wins (the warm one on a tie). Everything is deterministic
 * for a seed and distance path.
 *
 * `coactFeatures` turns probe activations into per-neuron features for
 * `--method coact` (neurons that fire together end up close).
 */
import { ConfigError, ShapeError } from "../errors.ts";
import { Rng } from "../rng.ts";
import { balancedAssign, sameLabels } from "./balanced_assign.ts";
import { type DotEngine, gpuEngine, gpuOpen, hostEngine } from "./kmeans_distance.ts";
import {
  checkBalanced,
  checkSizes,
  inertiaOf,
  means,
  preparePoints,
  sqNorms,
} from "./kmeans_points.ts";
import { kmeansPlusPlus } from "./kmeans_seed.ts";

export { balancedAssign, SWAP_REL_TOL } from "./balanced_assign.ts";
export { coactFeatures, type CoactOptions, DEFAULT_COACT_DIM } from "./coact.ts";

/** Default number of assignment steps. */
export const DEFAULT_KMEANS_ITERS = 50;
/** Above this many multiply-adds per distance matrix, `distance: "auto"` uses the GPU. */
export const GPU_MIN_MACS = 1 << 20;

/** Where the distance matmul runs. */
export type DistanceDevice = "auto" | "gpu" | "host";

/** Options of `balancedKMeans`. */
export interface BalancedKMeansOptions {
  /** Maximum assignment steps (default `DEFAULT_KMEANS_ITERS`). */
  iters?: number;
  /** Seed of the k-means++ draws (default 0). */
  seed?: number;
  /** A previous balanced partition (n labels in [0, E)) to start from. */
  warm?: ArrayLike<number>;
  /** With `warm`: also run a fresh k-means++ start and keep the lower inertia (default true). */
  keepBest?: boolean;
  /** L2-normalise the rows first (default true; zero rows stay zero). */
  normalize?: boolean;
  /** Distance path (default "auto": GPU above `GPU_MIN_MACS` when a GPU is open). */
  distance?: DistanceDevice;
}

/** Result of `balancedKMeans`. */
export interface BalancedKMeansResult {
  /** Cluster of each point, (n); every cluster holds exactly n/E points. */
  labels: Uint32Array;
  /** Cluster means of the (normalised) points, (E, d) row-major. */
  centroids: Float32Array;
  /** Σ ‖x_i − c_label‖² of the result, in float64. */
  inertia: number;
  /** Assignment steps of the kept run. */
  iters: number;
  /** Whether the kept run stopped because its labels stopped changing. */
  converged: boolean;
  /** Which start the result comes from. */
  start: "warm" | "fresh";
  /** Inertia of the warm run (null without `warm`). */
  warmInertia: number | null;
  /** Inertia of the fresh run (null when only the warm one ran). */
  freshInertia: number | null;
  /** Where the distance matrices were computed. */
  device: "gpu" | "host";
  /** Wall time of the whole call, ms. */
  ms: number;
}

interface RunResult {
  labels: Uint32Array;
  centroids: Float64Array;
  inertia: number;
  iters: number;
  converged: boolean;
}

/** Lloyd iterations with the balanced assignment, from centroids `c0` (and labels `prev0` if warm). */
async function lloyd(
  engine: DotEngine,
  x: Float32Array,
  xn: Float64Array,
  n: number,
  d: number,
  E: number,
  c0: Float64Array,
  prev0: Uint32Array | null,
  iters: number,
): Promise<RunResult> {
  let c = c0;
  let prev = prev0;
  let t = 0;
  let converged = false;
  while (t < iters) {
    t++;
    const c32 = Float32Array.from(c);
    const cn = sqNorms(c32, E, d);
    const dots = await engine.dots(c32); // (n, E)
    const D = new Float64Array(n * E); // (n, E)
    for (let i = 0; i < n; i++) {
      for (let e = 0; e < E; e++) D[i * E + e] = Math.max(0, xn[i] + cn[e] - 2 * dots[i * E + e]);
    }
    const labels = balancedAssign(D, n, E, prev);
    if (prev && sameLabels(labels, prev)) {
      converged = true;
      break;
    }
    prev = labels;
    c = means(x, labels, n, d, E);
  }
  const labels = prev!;
  return { labels, centroids: c, inertia: inertiaOf(x, c, labels, n, d), iters: t, converged };
}

/**
 * Balanced k-means of the rows of `points` (n, d) into E clusters of
 * exactly n/E points. Throws `ConfigError` when E does not divide n and
 * `ShapeError` when `points` is not n·d values.
 */
export async function balancedKMeans(
  points: Float32Array,
  n: number,
  d: number,
  E: number,
  opts: BalancedKMeansOptions = {},
): Promise<BalancedKMeansResult> {
  const t0 = performance.now();
  const fn = "balancedKMeans";
  checkSizes(fn, n, d, E);
  if (points.length !== n * d) {
    throw new ShapeError(
      `${fn}: ${points.length} values do not form ${n} points of dimension ${d} (need ${n * d})`,
    );
  }
  const iters = opts.iters ?? DEFAULT_KMEANS_ITERS;
  if (!Number.isInteger(iters) || iters < 1) {
    throw new ConfigError(`${fn}: iters must be a positive integer, got ${iters}`);
  }
  const distance = opts.distance ?? "auto";
  if (!["auto", "gpu", "host"].includes(distance)) {
    throw new ConfigError(`${fn}: distance must be auto, gpu or host, got ${distance}`);
  }
  if (opts.warm) checkBalanced(fn, "warm start", opts.warm, n, E);

  const x = preparePoints(points, n, d, opts.normalize ?? true);
  const xn = sqNorms(x, n, d);
  const useGpu = distance === "gpu" ||
    (distance === "auto" && n * E * d > GPU_MIN_MACS && gpuOpen());
  const engine = useGpu ? gpuEngine(x, n, d, E) : hostEngine(x, n, d, E);
  try {
    let warm: RunResult | null = null;
    let fresh: RunResult | null = null;
    if (opts.warm) {
      const w = Uint32Array.from(opts.warm);
      warm = await lloyd(engine, x, xn, n, d, E, means(x, w, n, d, E), w, iters);
    }
    if (!opts.warm || (opts.keepBest ?? true)) {
      const c0 = kmeansPlusPlus(x, n, d, E, new Rng(opts.seed ?? 0));
      fresh = await lloyd(engine, x, xn, n, d, E, c0, null, iters);
    }
    const keepWarm = warm !== null && (fresh === null || warm.inertia <= fresh.inertia);
    const best = keepWarm ? warm! : fresh!;
    return {
      labels: best.labels,
      centroids: Float32Array.from(best.centroids),
      inertia: best.inertia,
      iters: best.iters,
      converged: best.converged,
      start: keepWarm ? "warm" : "fresh",
      warmInertia: warm?.inertia ?? null,
      freshInertia: fresh?.inertia ?? null,
      device: engine.device,
      ms: performance.now() - t0,
    };
  } finally {
    engine.release();
  }
}
