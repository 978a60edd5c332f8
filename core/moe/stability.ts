/**
 * @module
 * The partition that the schedule's monitor and `ssd profile` compare
 * between two moments of training: balanced k-means on the L2-normalised
 * c_fc rows, run from a fresh k-means++ start and, when there is a previous
 * partition, warm-started from it; the fresh result is kept only when its
 * inertia is lower by more than a margin.
 *
 * Why a margin: when the structure barely moves, both starts land on
 * partitions of almost equal inertia, and the fresh one can win by a hair
 * while grouping the neurons very differently (an ARI near 0.2 with the warm
 * one). "Keep the lower inertia" then reads a stable structure as moving. A
 * fresh start still wins when the structure really moved (or the warm start
 * is stuck far from a good partition), and that win is what should read as
 * "not stable".
 */
import { balancedKMeans, type DistanceDevice } from "./balanced_kmeans.ts";
import type { Labels } from "./partition.ts";

/** Relative inertia a fresh start must beat the warm one by to replace it. */
export const DEFAULT_FRESH_MARGIN = 0.01;

/** Whether a fresh start of inertia `fresh` replaces a warm one of inertia `warm`. */
export function freshWins(fresh: number, warm: number, margin = DEFAULT_FRESH_MARGIN): boolean {
  return fresh < warm * (1 - margin);
}

/** Options of `trackedPartition`. */
export interface TrackedPartitionOptions {
  /** The previous partition (n labels), to warm-start from; none at the first check. */
  warm?: Labels;
  /** Relative margin of `freshWins` (default `DEFAULT_FRESH_MARGIN`). */
  fresh_margin?: number;
  /** k-means iterations (default: balancedKMeans's). */
  iters?: number;
  /** Seed of the fresh k-means++ start (default 0). */
  seed?: number;
  /** Distance path (default "auto"). */
  distance?: DistanceDevice;
}

/** The partition kept, and both inertias. */
export interface TrackedPartition {
  /** Neuron → expert. */
  labels: Uint32Array;
  /** Which start was kept. */
  start: "warm" | "fresh";
  /** Inertia of the kept partition. */
  inertia: number;
  /** Inertia of the warm run (null without a previous partition). */
  warm_inertia: number | null;
  /** Inertia of the fresh run. */
  fresh_inertia: number;
}

/**
 * Partitions `rows` ((n, d) row-major) into E balanced experts, keeping the
 * warm start unless the fresh one wins by the margin (see the module comment).
 */
export async function trackedPartition(
  rows: Float32Array,
  n: number,
  d: number,
  E: number,
  opts: TrackedPartitionOptions = {},
): Promise<TrackedPartition> {
  const common = {
    iters: opts.iters,
    seed: opts.seed ?? 0,
    normalize: true,
    distance: opts.distance,
  };
  const fresh = await balancedKMeans(rows, n, d, E, common);
  let kept = fresh;
  let warmInertia: number | null = null;
  if (opts.warm) {
    const warm = await balancedKMeans(rows, n, d, E, {
      ...common,
      warm: opts.warm,
      keepBest: false,
    });
    warmInertia = warm.inertia;
    if (!freshWins(fresh.inertia, warm.inertia, opts.fresh_margin)) kept = warm;
  }
  return {
    labels: kept.labels,
    start: kept === fresh ? "fresh" : "warm",
    inertia: kept.inertia,
    warm_inertia: warmInertia,
    fresh_inertia: fresh.inertia,
  };
}
