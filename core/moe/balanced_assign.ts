/**
 * The balanced assignment step of balanced k-means: greedy by distance with
 * capacity, then a pairwise swap pass (also from the previous labels, the
 * cheaper result kept), so every cluster holds exactly n/E points.
 */
import { ConfigError, ShapeError } from "../errors.ts";
import { checkBalanced, checkSizes } from "./kmeans_points.ts";

/**
 * A swap (or the choice of a new assignment over the previous one) must
 * lower Σ D by more than this share of the mean distance: smaller gains are
 * f32 noise, and skipping them keeps the GPU and host paths in step.
 */
export const SWAP_REL_TOL = 1e-6;

/**
 * Greedy balanced assignment: pairs in order of (f32 distance, point,
 * cluster); a pair is taken when its point is free and its cluster has room.
 */
function greedyAssign(D: Float64Array, n: number, E: number, s: number): Uint32Array {
  const total = n * E;
  // Sort keys are exact doubles: f32 bits (non-negative floats sort like their bit patterns)
  // times 2^pairBits plus the pair index. Beyond 2^21 pairs the low mantissa bits are dropped
  // to stay within 53 bits, so ties are broken by index at a coarser resolution.
  const pairBits = Math.max(21, Math.ceil(Math.log2(total)));
  const shift = pairBits - 21;
  const scale = 2 ** pairBits;
  const bits = new Uint32Array(Float32Array.from(D).buffer);
  const keys = new Float64Array(total);
  for (let p = 0; p < total; p++) keys[p] = (bits[p] >>> shift) * scale + p;
  keys.sort();
  const labels = new Uint32Array(n);
  const taken = new Uint8Array(n);
  const count = new Uint32Array(E);
  let assigned = 0;
  for (let q = 0; q < total && assigned < n; q++) {
    const p = keys[q] % scale;
    const i = Math.floor(p / E);
    const e = p - i * E;
    if (taken[i] || count[e] >= s) continue;
    taken[i] = 1;
    labels[i] = e;
    count[e]++;
    assigned++;
  }
  return labels;
}

/**
 * Pairwise-swap improvement of a balanced assignment under fixed distances,
 * in place: repeatedly applies the best swap over all cluster pairs while it
 * gains more than `tol`. For clusters a, b the best swap pairs the member i
 * of a maximising D[i,a] − D[i,b] with the member j of b maximising
 * D[j,b] − D[j,a], so each pass costs O(E·n) instead of O(n²).
 */
function swapImprove(
  D: Float64Array,
  labels: Uint32Array,
  n: number,
  E: number,
  s: number,
  tol: number,
): void {
  if (E < 2 || s < 1) return;
  const members = new Uint32Array(n); // cluster e's points in [e·s, (e+1)·s)
  const fill = new Uint32Array(E);
  for (let i = 0; i < n; i++) members[labels[i] * s + fill[labels[i]]++] = i;
  const bestVal = new Float64Array(E * E);
  const bestSlot = new Uint32Array(E * E);
  const updateRow = (a: number) => {
    for (let b = 0; b < E; b++) {
      if (b === a) continue;
      let best = -Infinity;
      let slot = 0;
      for (let k = 0; k < s; k++) {
        const i = members[a * s + k];
        const v = D[i * E + a] - D[i * E + b];
        if (v > best) {
          best = v;
          slot = k;
        }
      }
      bestVal[a * E + b] = best;
      bestSlot[a * E + b] = slot;
    }
  };
  for (let a = 0; a < E; a++) updateRow(a);
  // Each swap lowers Σ D by more than tol, so this bound is never reached in exact arithmetic.
  const maxSwaps = n * E;
  for (let swaps = 0; swaps < maxSwaps; swaps++) {
    let gain = tol;
    let ba = -1;
    let bb = -1;
    for (let a = 0; a < E; a++) {
      for (let b = a + 1; b < E; b++) {
        const g = bestVal[a * E + b] + bestVal[b * E + a];
        if (g > gain) {
          gain = g;
          ba = a;
          bb = b;
        }
      }
    }
    if (ba < 0) return;
    const sa = ba * s + bestSlot[ba * E + bb];
    const sb = bb * s + bestSlot[bb * E + ba];
    const i = members[sa];
    const j = members[sb];
    members[sa] = j;
    members[sb] = i;
    labels[i] = bb;
    labels[j] = ba;
    updateRow(ba);
    updateRow(bb);
  }
}

function assignmentCost(D: Float64Array, labels: Uint32Array, n: number, E: number): number {
  let c = 0;
  for (let i = 0; i < n; i++) c += D[i * E + labels[i]];
  return c;
}

/** Whether two labellings of equal length agree everywhere. */
export function sameLabels(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The balanced assignment step: n points to E clusters of exactly n/E,
 * approximately minimising Σ D[i, label(i)] for a distance matrix D (n, E)
 * row-major (non-negative). Greedy by distance with capacity, then the swap
 * pass; with `prev` (a balanced labelling) the swap pass also runs from it
 * and the cheaper result is kept, `prev`'s on a near-tie. No swap of two
 * points of different clusters lowers the cost of the result by more than
 * `SWAP_REL_TOL` times the mean distance.
 */
export function balancedAssign(
  D: Float64Array,
  n: number,
  E: number,
  prev: Uint32Array | null = null,
): Uint32Array {
  checkSizes("balancedAssign", n, 1, E);
  if (D.length !== n * E) {
    throw new ShapeError(`balancedAssign: ${D.length} distances do not form [${n}, ${E}]`);
  }
  if (prev) checkBalanced("balancedAssign", "prev", prev, n, E);
  const s = n / E;
  let meanD = 0;
  for (let p = 0; p < n * E; p++) {
    // The greedy sorts f32 bit patterns, which order like the values only when non-negative.
    if (!(D[p] >= 0 && D[p] < Infinity)) {
      throw new ConfigError(
        `balancedAssign: distance [${Math.floor(p / E)}, ${p % E}] is ${D[p]}, not finite and >= 0`,
      );
    }
    meanD += D[p];
  }
  const tol = SWAP_REL_TOL * (meanD / (n * E));
  let labels = greedyAssign(D, n, E, s);
  swapImprove(D, labels, n, E, s, tol);
  if (prev) {
    const fromPrev = prev.slice();
    swapImprove(D, fromPrev, n, E, s, tol);
    if (assignmentCost(D, fromPrev, n, E) <= assignmentCost(D, labels, n, E) + tol) {
      labels = fromPrev;
    }
  }
  return labels;
}
