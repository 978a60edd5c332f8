/**
 * LayerNorm over the last dim, with weight and bias.
 *
 *   forward:  mean_r = (1/C) sum_j x[r, j]
 *             rstd_r = 1 / sqrt((1/C) sum_j (x[r, j] - mean_r)^2 + eps)
 *             xhat   = (x - mean_r) * rstd_r
 *             y      = xhat * w + b
 *   backward: g      = dy * w
 *             dx     = rstd_r * (g - mean_j(g) - xhat * mean_j(g * xhat))
 *             dw[j]  = sum_r dy[r, j] * xhat[r, j]
 *             db[j]  = sum_r dy[r, j]
 *
 * Layouts: x, y, dy, dx are (rows, C) row-major; w, b, dw, db are (C);
 * mean and rstd are (rows), saved by the forward for the backward.
 *
 * Bindings and launch shapes:
 *   forward   x, w, b -> y, mean, rstd      one thread per row
 *   backward  x, w, dy, mean, rstd -> dx    one thread per row
 *   params    x, dy, mean, rstd -> dwPart, dbPart
 *             one thread per (column, chunk of LN_CHUNK_ROWS rows): grid
 *             (ceil(C / 64), chunks); each thread sums its chunk's rows in
 *             order. With one chunk the partials are dw and db themselves;
 *             otherwise `sumRowsKernel` adds the (chunks, C) partials in
 *             order. Every sum has a fixed order, so dw and db are
 *             bit-for-bit deterministic (no atomics).
 * Row kernels use a two-pass mean / variance (no E[x^2] - E[x]^2
 * cancellation). They run 64 threads per workgroup with a 2-D grid past
 * 65535 groups. Thread-per-row suits llvmpipe, where workgroup shared memory
 * is slow, for C up to ~1024. All kernels read vec4s when C is a multiple of
 * 4 (C is then counted in vec4s in the params).
 */
import { defineLaneKernels } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { ceilDiv, flatGrid, MAX_WORKGROUPS_PER_DIM, Params } from "../util.ts";
import { bindings, flatEntry, hsum, type Lane } from "../wgsl.ts";
import { sumRowsKernel } from "./reduce.ts";

/** Rows per chunk of the deterministic dw / db reduction. */
export const LN_CHUNK_ROWS = 256;

const WG = 64;

// Scalar and vec4 variants share one source over `alias T`; hsum folds a T
// accumulator to one f32.
function header(t: Lane): string {
  return /* wgsl */ `
alias T = ${t};
fn hsum(v: T) -> f32 { return ${hsum(t)}; }
`;
}

function forwardSource(t: Lane): string {
  return header(t) + /* wgsl */ `
${bindings`
  params rows: u32, c: u32, inv_c: f32, eps: f32
  read   x: array<T>, w: array<T>, b: array<T>
  write  y: array<T>, mean: array<f32>, rstd: array<f32>
`}

${flatEntry(WG, { id: "r", bound: "p.rows" })}
  let base = r * p.c;
  var s = T(0.0);
  for (var j = 0u; j < p.c; j++) { s += x[base + j]; }
  let m = hsum(s) * p.inv_c;
  var v = T(0.0);
  for (var j = 0u; j < p.c; j++) {
    let d = x[base + j] - m;
    v += d * d;
  }
  let rs = inverseSqrt(hsum(v) * p.inv_c + p.eps);
  for (var j = 0u; j < p.c; j++) {
    y[base + j] = (x[base + j] - m) * rs * w[j] + b[j];
  }
  mean[r] = m;
  rstd[r] = rs;
}
`;
}

function backwardSource(t: Lane): string {
  return header(t) + /* wgsl */ `
${bindings`
  params rows: u32, c: u32, inv_c: f32
  read   x: array<T>, w: array<T>, dy: array<T>, mean: array<f32>, rstd: array<f32>
  write  dx: array<T>
`}

${flatEntry(WG, { id: "r", bound: "p.rows" })}
  let base = r * p.c;
  let m = mean[r];
  let rs = rstd[r];
  var sg = T(0.0);
  var sgx = T(0.0);
  for (var j = 0u; j < p.c; j++) {
    let g = dy[base + j] * w[j];
    sg += g;
    sgx += g * (x[base + j] - m) * rs;
  }
  let mg = hsum(sg) * p.inv_c;
  let mgx = hsum(sgx) * p.inv_c;
  for (var j = 0u; j < p.c; j++) {
    let g = dy[base + j] * w[j];
    let xh = (x[base + j] - m) * rs;
    dx[base + j] = rs * (g - mg - xh * mgx);
  }
}
`;
}

function paramsSource(t: Lane): string {
  return header(t) + /* wgsl */ `
${bindings`
  params rows: u32, c: u32, chunk: u32
  read   x: array<T>, dy: array<T>, mean: array<f32>, rstd: array<f32>
  write  dw_part: array<T>, db_part: array<T>
`}

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.x;
  if (j >= p.c) { return; }
  let r0 = gid.y * p.chunk;
  let r1 = min(r0 + p.chunk, p.rows);
  var sw = T(0.0);
  var sb = T(0.0);
  for (var r = r0; r < r1; r++) {
    let d = dy[r * p.c + j];
    sw += d * (x[r * p.c + j] - mean[r]) * rstd[r];
    sb += d;
  }
  dw_part[gid.y * p.c + j] = sw;
  db_part[gid.y * p.c + j] = sb;
}
`;
}

// Scalar or vec4 loads (C counted in lanes): the forward, the dx backward,
// the per-chunk dw / db partial sums.
const FORWARD = defineLaneKernels("layernorm.forward", forwardSource);
const BACKWARD = defineLaneKernels("layernorm.backward", backwardSource);
const PARAMS = defineLaneKernels("layernorm.params", paramsSource);

/** Sizes of a layernorm launch. */
export interface LayerNormSizes {
  /** Number of rows (product of the leading dims). */
  rows: number;
  /** Normalised (last) dim. */
  c: number;
}

/** y = layernorm(x) * w + b; also writes the per-row mean and rstd. */
export function layernormForward(
  g: Gpu,
  y: GPUBuffer,
  mean: GPUBuffer,
  rstd: GPUBuffer,
  x: GPUBuffer,
  w: GPUBuffer,
  b: GPUBuffer,
  { rows, c }: LayerNormSizes,
  eps = 1e-5,
): void {
  if (rows === 0 || c === 0) return;
  const vec = c % 4 === 0;
  g.recorder.dispatchFlat(rows, WG, {
    kernel: FORWARD(vec),
    buffers: [x, w, b, y, mean, rstd],
    params: new Params().u32(rows).u32(vec ? c / 4 : c).f32(1 / c).f32(eps),
  });
}

/**
 * Backward of `layernormForward`: writes dx, and dw / db when given (pass
 * null to skip a parameter gradient). `mean` and `rstd` are the forward's.
 */
export function layernormBackward(
  g: Gpu,
  dx: GPUBuffer | null,
  dw: GPUBuffer | null,
  db: GPUBuffer | null,
  x: GPUBuffer,
  w: GPUBuffer,
  dy: GPUBuffer,
  mean: GPUBuffer,
  rstd: GPUBuffer,
  { rows, c }: LayerNormSizes,
): void {
  if (rows === 0 || c === 0) return;
  const vec = c % 4 === 0;
  const lanes = vec ? c / 4 : c;
  if (dx) {
    const workgroups = flatGrid(rows, WG);
    g.recorder.dispatch({
      kernel: BACKWARD(vec),
      buffers: [x, w, dy, mean, rstd, dx],
      params: new Params().u32(rows).u32(lanes).f32(1 / c),
      workgroups,
    });
  }
  if (!dw && !db) return;
  // Chunks grow past LN_CHUNK_ROWS only when rows would need more than the
  // per-dimension workgroup limit in y.
  const chunk = Math.max(LN_CHUNK_ROWS, ceilDiv(rows, MAX_WORKGROUPS_PER_DIM));
  const chunks = ceilDiv(rows, chunk);
  const groupsX = ceilDiv(lanes, WG);
  if (groupsX > MAX_WORKGROUPS_PER_DIM) {
    throw new RangeError(`layernormBackward: C = ${c} needs more than 65535 workgroups`);
  }
  const partBytes = chunks * c * 4;
  const single = chunks === 1;
  // The kernel writes both partials; a skipped gradient still needs a buffer.
  const dwPart = single && dw ? dw : g.pool.acquire(partBytes);
  const dbPart = single && db ? db : g.pool.acquire(partBytes);
  g.recorder.dispatch({
    kernel: PARAMS(vec),
    buffers: [x, dy, mean, rstd, dwPart, dbPart],
    params: new Params().u32(rows).u32(lanes).u32(chunk),
    workgroups: [groupsX, chunks],
  });
  if (!single) {
    if (dw) sumRowsKernel(g, dw, dwPart, chunks, c);
    if (db) sumRowsKernel(g, db, dbPart, chunks, c);
  }
  if (dwPart !== dw) g.pool.release(dwPart);
  if (dbPart !== db) g.pool.release(dbPart);
}
