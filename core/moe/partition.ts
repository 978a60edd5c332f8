/**
 * Expert partitions and how to compare and score them.
 *
 * - `permutationFromLabels` / `invertPermutation` / `labelsFromPermutation`:
 *   between a labelling (neuron → expert) and the stored order of an MoE
 *   layer (expert e owns positions [e·s, (e+1)·s), s = n/E);
 *   `permuteRows` / `permuteCols` apply a permutation to a matrix.
 * - `adjustedRandIndex`: agreement of two partitions (pattern similarity).
 * - `expertMass`, `oracleTopK`, `topkOverlap`, `coverage`: per-token expert
 *   activation mass, the oracle's top-k experts, the overlap of two top-k
 *   selections, and the share of activation mass a selection keeps.
 *
 * Activation mass is Σ |a| over an expert's neurons: for ReLU activations
 * (a ≥ 0) that is the plain sum; for GELU's small negative values it
 * keeps coverage within [0, 1].
 *
 * Layouts: activations (N, n) and masses (N, E) are row-major, one row per
 * token; a selection is (N, k) expert indices, one row per token.
 */
import { ConfigError, ShapeError } from "../errors.ts";

/** Anything indexable with numeric labels (Uint32Array, Int32Array, number[]). */
export type Labels = ArrayLike<number>;

function checkE(fn: string, n: number, E: number): number {
  if (!Number.isInteger(E) || E < 1) {
    throw new ConfigError(`${fn}: the expert count must be a positive integer, got ${E}`);
  }
  if (n % E !== 0) {
    throw new ConfigError(`${fn}: ${E} experts do not divide ${n} neurons into equal experts`);
  }
  return n / E;
}

function checkK(fn: string, k: number, E: number): void {
  if (!Number.isInteger(k) || k < 1 || k > E) {
    throw new ConfigError(`${fn}: top-k must be an integer in [1, ${E}], got ${k}`);
  }
}

function checkLabels(fn: string, labels: Labels, E: number): void {
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i];
    if (!Number.isInteger(l) || l < 0 || l >= E) {
      throw new ConfigError(`${fn}: label ${l} of neuron ${i} is not in [0, ${E})`);
    }
  }
}

/**
 * The stored position of each neuron, (n): expert e's neurons go to
 * positions [e·s, (e+1)·s) in their original order. Throws `ConfigError`
 * unless every expert has exactly s = n/E neurons.
 */
export function permutationFromLabels(labels: Labels, E: number): Uint32Array {
  const fn = "permutationFromLabels";
  const n = labels.length;
  const s = checkE(fn, n, E);
  checkLabels(fn, labels, E);
  const fill = new Uint32Array(E);
  for (let i = 0; i < n; i++) fill[labels[i]]++;
  for (let e = 0; e < E; e++) {
    if (fill[e] !== s) {
      throw new ConfigError(
        `${fn}: expert ${e} has ${fill[e]} neurons, expected ${s} (${n} neurons, ${E} experts)`,
      );
    }
  }
  fill.fill(0);
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = labels[i] * s + fill[labels[i]]++;
  return perm;
}

/** The inverse permutation: `inv[perm[i]] = i` (stored position → original neuron). */
export function invertPermutation(perm: ArrayLike<number>): Uint32Array {
  const n = perm.length;
  const inv = new Uint32Array(n);
  const seen = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const p = perm[i];
    if (!Number.isInteger(p) || p < 0 || p >= n || seen[p]) {
      throw new ConfigError(
        `invertPermutation: not a permutation of ${n}: entry ${i} is ${p}` +
          (seen[p] ? " (repeated)" : ""),
      );
    }
    seen[p] = 1;
    inv[p] = i;
  }
  return inv;
}

/** The expert of each neuron given its stored position: `floor(perm[i] / s)`. */
export function labelsFromPermutation(perm: ArrayLike<number>, E: number): Uint32Array {
  const s = checkE("labelsFromPermutation", perm.length, E);
  invertPermutation(perm); // validates
  return Uint32Array.from(perm, (p) => Math.floor(p / s));
}

/** Row i of `src` (rows, cols) goes to row perm[i] of the result. */
export function permuteRows(
  src: Float32Array,
  rows: number,
  cols: number,
  perm: ArrayLike<number>,
): Float32Array {
  if (src.length !== rows * cols || perm.length !== rows) {
    throw new ShapeError(
      `permuteRows: ${src.length} values as [${rows}, ${cols}] with a permutation of ${perm.length} rows`,
    );
  }
  invertPermutation(perm);
  const out = new Float32Array(src.length);
  for (let i = 0; i < rows; i++) out.set(src.subarray(i * cols, (i + 1) * cols), perm[i] * cols);
  return out;
}

/** Column j of `src` (rows, cols) goes to column perm[j] of the result. */
export function permuteCols(
  src: Float32Array,
  rows: number,
  cols: number,
  perm: ArrayLike<number>,
): Float32Array {
  if (src.length !== rows * cols || perm.length !== cols) {
    throw new ShapeError(
      `permuteCols: ${src.length} values as [${rows}, ${cols}] with a permutation of ${perm.length} columns`,
    );
  }
  invertPermutation(perm);
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    for (let j = 0; j < cols; j++) out[o + perm[j]] = src[o + j];
  }
  return out;
}

function pairs(x: number): number {
  return (x * (x - 1)) / 2;
}

/**
 * Adjusted Rand index of two labellings of the same n items (Hubert and
 * Arabie): 1 for the same partition up to relabelling, about 0 for
 * independent ones, negative below chance. Labels may be any integers.
 * Where the index is 0/0 (n < 2, or both partitions all-singletons or
 * all-one-cluster, i.e. identical) it is 1, as in scikit-learn.
 */
export function adjustedRandIndex(a: Labels, b: Labels): number {
  const n = a.length;
  if (b.length !== n) {
    throw new ShapeError(`adjustedRandIndex: labellings differ in length (${n} vs ${b.length})`);
  }
  if (n < 2) return 1;
  const table = new Map<string, number>();
  const rowSum = new Map<number, number>();
  const colSum = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const key = `${a[i]},${b[i]}`;
    table.set(key, (table.get(key) ?? 0) + 1);
    rowSum.set(a[i], (rowSum.get(a[i]) ?? 0) + 1);
    colSum.set(b[i], (colSum.get(b[i]) ?? 0) + 1);
  }
  let index = 0;
  for (const v of table.values()) index += pairs(v);
  let sa = 0;
  for (const v of rowSum.values()) sa += pairs(v);
  let sb = 0;
  for (const v of colSum.values()) sb += pairs(v);
  const expected = (sa * sb) / pairs(n);
  const max = (sa + sb) / 2;
  if (max === expected) return 1;
  return (index - expected) / (max - expected);
}

/**
 * Activation mass of each expert for each token, (N, E) float64:
 * Σ |acts[t, j]| over the neurons j with labels[j] = e. `acts` is
 * (nTokens, labels.length) row-major, in the labels' neuron order.
 */
export function expertMass(
  acts: Float32Array,
  nTokens: number,
  labels: Labels,
  E: number,
): Float64Array {
  const fn = "expertMass";
  const n = labels.length;
  if (acts.length !== nTokens * n) {
    throw new ShapeError(
      `${fn}: ${acts.length} activations do not form [${nTokens}, ${n}] for ${n} labels`,
    );
  }
  if (!Number.isInteger(E) || E < 1) {
    throw new ConfigError(`${fn}: the expert count must be a positive integer, got ${E}`);
  }
  checkLabels(fn, labels, E);
  const lab = Uint32Array.from(labels);
  const mass = new Float64Array(nTokens * E); // (N, E)
  for (let t = 0; t < nTokens; t++) {
    const row = t * n;
    const mo = t * E;
    for (let j = 0; j < n; j++) mass[mo + lab[j]] += Math.abs(acts[row + j]);
  }
  return mass;
}

/**
 * The oracle's experts: per token the k experts of largest mass, in
 * decreasing mass (ties to the lower expert index), (N, k).
 */
export function oracleTopK(
  mass: ArrayLike<number>,
  nTokens: number,
  E: number,
  k: number,
): Uint32Array {
  const fn = "oracleTopK";
  if (!Number.isInteger(E) || E < 1) {
    throw new ConfigError(`${fn}: the expert count must be a positive integer, got ${E}`);
  }
  if (mass.length !== nTokens * E) {
    throw new ShapeError(`${fn}: ${mass.length} masses do not form [${nTokens}, ${E}]`);
  }
  checkK(fn, k, E);
  const out = new Uint32Array(nTokens * k);
  const idx = new Uint32Array(E);
  for (let t = 0; t < nTokens; t++) {
    const o = t * E;
    for (let e = 0; e < E; e++) idx[e] = e;
    idx.sort((x, y) => (mass[o + y] - mass[o + x]) || x - y);
    out.set(idx.subarray(0, k), t * k);
  }
  return out;
}

function checkSets(fn: string, sets: Uint32Array, nTokens: number, E: number, k: number): void {
  if (sets.length !== nTokens * k) {
    throw new ShapeError(`${fn}: ${sets.length} expert ids do not form [${nTokens}, ${k}]`);
  }
  for (let q = 0; q < sets.length; q++) {
    if (sets[q] >= E) {
      throw new ConfigError(
        `${fn}: token ${Math.floor(q / k)} selects expert ${sets[q]}, not in [0, ${E})`,
      );
    }
  }
}

/** Mean over tokens of |A_t ∩ B_t| / k for two (N, k) selections. */
export function topkOverlap(setsA: Uint32Array, setsB: Uint32Array, k: number): number {
  const fn = "topkOverlap";
  if (!Number.isInteger(k) || k < 1) {
    throw new ConfigError(`${fn}: top-k must be a positive integer, got ${k}`);
  }
  if (setsA.length !== setsB.length || setsA.length % k !== 0) {
    throw new ShapeError(
      `${fn}: selections of ${setsA.length} and ${setsB.length} ids are not both [N, ${k}]`,
    );
  }
  const nTokens = setsA.length / k;
  if (nTokens === 0) return 1;
  let total = 0;
  for (let t = 0; t < nTokens; t++) {
    let both = 0;
    for (let p = 0; p < k; p++) {
      const e = setsA[t * k + p];
      for (let q = 0; q < k; q++) {
        if (setsB[t * k + q] === e) {
          both++;
          break;
        }
      }
    }
    total += both / k;
  }
  return total / nTokens;
}

/**
 * Mean over tokens of the share of the token's mass (N, E) inside its
 * selected experts (N, k). A token with no mass at all loses nothing and
 * counts as 1. A selection naming an expert twice counts it once.
 */
export function coverageFromMass(
  mass: ArrayLike<number>,
  nTokens: number,
  E: number,
  sets: Uint32Array,
  k: number,
): number {
  const fn = "coverage";
  if (mass.length !== nTokens * E) {
    throw new ShapeError(`${fn}: ${mass.length} masses do not form [${nTokens}, ${E}]`);
  }
  checkK(fn, k, E);
  checkSets(fn, sets, nTokens, E, k);
  if (nTokens === 0) return 1;
  const picked = new Uint8Array(E);
  let total = 0;
  for (let t = 0; t < nTokens; t++) {
    let all = 0;
    for (let e = 0; e < E; e++) all += mass[t * E + e];
    if (all <= 0) {
      total += 1;
      continue;
    }
    picked.fill(0);
    let inside = 0;
    for (let p = 0; p < k; p++) {
      const e = sets[t * k + p];
      if (!picked[e]) inside += mass[t * E + e];
      picked[e] = 1;
    }
    total += inside / all;
  }
  return total / nTokens;
}

/**
 * Coverage (share of activation mass kept) of per-token expert selections (N, k) on activations
 * (N, n) partitioned by `labels` into E experts: `coverageFromMass` of
 * `expertMass`.
 */
export function coverage(
  acts: Float32Array,
  nTokens: number,
  labels: Labels,
  E: number,
  sets: Uint32Array,
  k: number,
): number {
  return coverageFromMass(expertMass(acts, nTokens, labels, E), nTokens, E, sets, k);
}
