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
import { ConfigError, GpuError, ShapeError } from "../errors.ts";
import { matmul } from "../ops/matmul.ts";
import { Rng } from "../rng.ts";
import { type Tensor, tensor } from "../tensor.ts";
import { gpu } from "../../gpu/runtime.ts";

/** Default number of assignment steps. */
export const DEFAULT_KMEANS_ITERS = 50;
/** Above this many multiply-adds per distance matrix, `distance: "auto"` uses the GPU. */
export const GPU_MIN_MACS = 1 << 20;
/**
 * A swap (or the choice of a new assignment over the previous one) must
 * lower Σ D by more than this share of the mean distance: smaller gains are
 * f32 noise, and skipping them keeps the GPU and host paths in step.
 */
export const SWAP_REL_TOL = 1e-6;
/** Default feature dimension of `coactFeatures` (count-sketch width). */
export const DEFAULT_COACT_DIM = 256;

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

/** Dot products (n, E) of the points with the f32 centroids, rounded to f32. */
interface DotEngine {
  readonly device: "gpu" | "host";
  dots(c: Float32Array): Promise<Float32Array>;
  release(): void;
}

function hostEngine(x: Float32Array, n: number, d: number, E: number): DotEngine {
  return {
    device: "host",
    dots(c) {
      const out = new Float32Array(n * E);
      for (let i = 0; i < n; i++) {
        const xo = i * d;
        for (let e = 0; e < E; e++) {
          const co = e * d;
          // Four partial sums: faster in V8, still float64 before the final f32 rounding.
          let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
          let k = 0;
          for (; k + 3 < d; k += 4) {
            s0 += x[xo + k] * c[co + k];
            s1 += x[xo + k + 1] * c[co + k + 1];
            s2 += x[xo + k + 2] * c[co + k + 2];
            s3 += x[xo + k + 3] * c[co + k + 3];
          }
          for (; k < d; k++) s0 += x[xo + k] * c[co + k];
          out[i * E + e] = s0 + s1 + s2 + s3;
        }
      }
      return Promise.resolve(out);
    },
    release() {},
  };
}

function gpuEngine(x: Float32Array, n: number, d: number, E: number): DotEngine {
  const xt: Tensor = tensor(x, [n, d]);
  return {
    device: "gpu",
    async dots(c) {
      const ct = tensor(c, [E, d]);
      const out = matmul(xt, ct, { transB: true }); // (n, E)
      try {
        return await out.data();
      } finally {
        ct.release();
        out.release();
      }
    },
    release() {
      xt.release();
    },
  };
}

function gpuOpen(): boolean {
  try {
    gpu();
    return true;
  } catch (e) {
    // "auto" falls back to the host when no GPU runtime was opened (pure-CPU callers).
    if (e instanceof GpuError) return false;
    throw e;
  }
}

function checkSizes(fn: string, n: number, d: number, E: number): void {
  for (const [name, v] of [["n", n], ["d", d], ["E", E]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new ConfigError(`${fn}: ${name} must be a positive integer, got ${v}`);
    }
  }
  if (n % E !== 0) {
    throw new ConfigError(
      `${fn}: cannot split ${n} points into ${E} equal clusters: ${E} does not divide ${n}`,
    );
  }
}

/** Throws unless `labels` is n labels in [0, E) with exactly n/E of each. */
function checkBalanced(
  fn: string,
  what: string,
  labels: ArrayLike<number>,
  n: number,
  E: number,
): void {
  if (labels.length !== n) {
    throw new ShapeError(`${fn}: ${what} has ${labels.length} labels for ${n} points`);
  }
  const s = n / E;
  const count = new Uint32Array(E);
  for (let i = 0; i < n; i++) {
    const l = labels[i];
    if (!Number.isInteger(l) || l < 0 || l >= E) {
      throw new ConfigError(`${fn}: ${what} label ${l} of point ${i} is not in [0, ${E})`);
    }
    count[l]++;
  }
  for (let e = 0; e < E; e++) {
    if (count[e] !== s) {
      throw new ConfigError(
        `${fn}: ${what} is not balanced: cluster ${e} has ${count[e]} points, expected ${s}`,
      );
    }
  }
}

/** Copies the points, L2-normalising each row when asked; checks they are finite. */
function preparePoints(
  points: Float32Array,
  n: number,
  d: number,
  normalize: boolean,
): Float32Array {
  const x = new Float32Array(points);
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let k = i * d; k < (i + 1) * d; k++) {
      if (!Number.isFinite(x[k])) {
        throw new ConfigError(`balancedKMeans: point ${i} has a non-finite coordinate (${x[k]})`);
      }
      ss += x[k] * x[k];
    }
    if (normalize && ss > 0) {
      const inv = 1 / Math.sqrt(ss);
      for (let k = i * d; k < (i + 1) * d; k++) x[k] *= inv;
    }
  }
  return x;
}

function sqNorms(x: Float32Array | Float64Array, rows: number, d: number): Float64Array {
  const out = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    let s = 0;
    for (let k = i * d; k < (i + 1) * d; k++) s += x[k] * x[k];
    out[i] = s;
  }
  return out;
}

/** Cluster means (E, d) in float64. */
function means(
  x: Float32Array,
  labels: Uint32Array,
  n: number,
  d: number,
  E: number,
): Float64Array {
  const c = new Float64Array(E * d);
  const count = new Float64Array(E);
  for (let i = 0; i < n; i++) {
    const o = labels[i] * d;
    count[labels[i]]++;
    for (let k = 0; k < d; k++) c[o + k] += x[i * d + k];
  }
  for (let e = 0; e < E; e++) {
    const inv = count[e] > 0 ? 1 / count[e] : 0;
    for (let k = 0; k < d; k++) c[e * d + k] *= inv;
  }
  return c;
}

function inertiaOf(
  x: Float32Array,
  c: Float64Array,
  labels: Uint32Array,
  n: number,
  d: number,
): number {
  let total = 0;
  for (let i = 0; i < n; i++) {
    const co = labels[i] * d;
    for (let k = 0; k < d; k++) {
      const diff = x[i * d + k] - c[co + k];
      total += diff * diff;
    }
  }
  return total;
}

/** k-means++: the first centre uniform, each next one with probability ∝ squared distance. */
function kmeansPlusPlus(x: Float32Array, n: number, d: number, E: number, rng: Rng): Float64Array {
  const c = new Float64Array(E * d);
  const chosen = new Uint8Array(n);
  const minD = new Float64Array(n).fill(Infinity);
  let pick = rng.int(n);
  for (let e = 0; e < E; e++) {
    chosen[pick] = 1;
    for (let k = 0; k < d; k++) c[e * d + k] = x[pick * d + k];
    if (e === E - 1) break;
    let total = 0;
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let k = 0; k < d; k++) {
        const diff = x[i * d + k] - x[pick * d + k];
        s += diff * diff;
      }
      if (s < minD[i]) minD[i] = s;
      if (!chosen[i]) total += minD[i];
    }
    pick = -1;
    if (total > 0) {
      const r = rng.uniform() * total;
      let cum = 0;
      for (let i = 0; i < n; i++) {
        if (chosen[i] || minD[i] <= 0) continue;
        cum += minD[i];
        pick = i;
        if (cum > r) break;
      }
    }
    if (pick < 0) {
      // Every remaining point sits on a centre already: draw uniformly among them.
      let j = rng.int(n - e - 1);
      for (let i = 0; i < n; i++) {
        if (chosen[i]) continue;
        if (j-- === 0) {
          pick = i;
          break;
        }
      }
    }
  }
  return c;
}

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

function sameLabels(a: Uint32Array, b: Uint32Array): boolean {
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

/** Options of `coactFeatures`. */
export interface CoactOptions {
  /**
   * Feature width: with more probe tokens than this, the token axis is
   * count-sketched down to `dim` (default `DEFAULT_COACT_DIM`); with fewer,
   * the features are the tokens themselves.
   */
  dim?: number;
  /** Use the firing indicator (a > 0) rather than the activation value (default true). */
  binary?: boolean;
  /** Seed of the sketch's hash and signs (default 0). */
  seed?: number;
}

/**
 * Co-activation features for `--method coact`: row j (of d_ff rows) is
 * neuron j's firing vector over the probe tokens (`acts` is (nTokens, d_ff)
 * token-major), so after L2 normalisation two rows are close exactly when
 * the neurons fire on the same tokens (the dot of two binary vectors is
 * their co-activation count). Long token axes are count-sketched (each
 * token adds ±1 times its value to one random column) to `dim` columns,
 * which preserves inner products in expectation at O(nTokens·d_ff) cost.
 * Returns (d_ff, dim') row-major, dim' = min(nTokens, dim).
 */
export function coactFeatures(
  acts: Float32Array,
  nTokens: number,
  dff: number,
  opts: CoactOptions = {},
): Float32Array {
  const fn = "coactFeatures";
  for (const [name, v] of [["nTokens", nTokens], ["dff", dff]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new ConfigError(`${fn}: ${name} must be a positive integer, got ${v}`);
    }
  }
  if (acts.length !== nTokens * dff) {
    throw new ShapeError(
      `${fn}: ${acts.length} activations do not form [${nTokens}, ${dff}] (need ${nTokens * dff})`,
    );
  }
  const dim = opts.dim ?? DEFAULT_COACT_DIM;
  if (!Number.isInteger(dim) || dim < 1) {
    throw new ConfigError(`${fn}: dim must be a positive integer, got ${dim}`);
  }
  const binary = opts.binary ?? true;
  const sketch = nTokens > dim;
  const width = sketch ? dim : nTokens;
  const col = new Uint32Array(nTokens);
  const sign = new Float32Array(nTokens).fill(1);
  if (sketch) {
    const rng = new Rng(opts.seed ?? 0);
    for (let t = 0; t < nTokens; t++) {
      col[t] = rng.int(dim);
      sign[t] = rng.nextU32() & 1 ? 1 : -1;
    }
  } else {
    for (let t = 0; t < nTokens; t++) col[t] = t;
  }
  const out = new Float32Array(dff * width); // (d_ff, width)
  for (let t = 0; t < nTokens; t++) {
    const c = col[t];
    const sg = sign[t];
    const row = t * dff;
    for (let j = 0; j < dff; j++) {
      const a = acts[row + j];
      const v = binary ? (a > 0 ? 1 : 0) : a;
      if (v !== 0) out[j * width + c] += sg * v;
    }
  }
  return out;
}
