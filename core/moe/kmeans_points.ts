/**
 * Host helpers of balanced k-means: size and label checks, point
 * preparation, squared norms, cluster means and inertia (float64).
 */
import { ConfigError, ShapeError } from "../errors.ts";

/** Throws unless n, d, E are positive integers and E divides n. */
export function checkSizes(fn: string, n: number, d: number, E: number): void {
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
export function checkBalanced(
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
export function preparePoints(
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

/** Squared L2 norm of each of `rows` rows of dimension d, in float64. */
export function sqNorms(x: Float32Array | Float64Array, rows: number, d: number): Float64Array {
  const out = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    let s = 0;
    for (let k = i * d; k < (i + 1) * d; k++) s += x[k] * x[k];
    out[i] = s;
  }
  return out;
}

/** Cluster means (E, d) in float64. */
export function means(
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

/** Σ ‖x_i − c_label(i)‖², in float64. */
export function inertiaOf(
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
