/**
 * Reductions.
 *
 *   sumRows: out[j] = sum_i x[i * cols + j]   (sum over leading dims; the
 *            backward of a broadcast). One thread per column, looping over
 *            rows in order, so the result is deterministic.
 *   sumAll:  out[0] = sum_i x[i]. Two passes: 256 threads each sum a strided
 *            slice into partials, then one thread sums the partials in order.
 */
import type { Gpu } from "../runtime.ts";
import { ceilDiv, Params } from "../util.ts";

/** WGSL of sumRows. */
export const SUM_ROWS_WGSL = /* wgsl */ `
struct P { rows: u32, cols: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(1) @binding(0) var<uniform> p: P;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.x;
  if (j >= p.cols) { return; }
  var s = 0.0;
  for (var i = 0u; i < p.rows; i++) { s += x[i * p.cols + j]; }
  out[j] = s;
}
`;

/** WGSL of the first sumAll pass: 256 strided partial sums. */
export const SUM_PARTIAL_WGSL = /* wgsl */ `
struct P { n: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> partial: array<f32>;
@group(1) @binding(0) var<uniform> p: P;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  var s = 0.0;
  for (var i = gid.x; i < p.n; i += 256u) { s += x[i]; }
  partial[gid.x] = s;
}
`;

/** WGSL of the second sumAll pass: out[0] = scale * sum(partial[0..256)). */
export const SUM_FINAL_WGSL = /* wgsl */ `
struct P { scale: f32 }
@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(1) @binding(0) var<uniform> p: P;

@compute @workgroup_size(1)
fn main() {
  var s = 0.0;
  for (var i = 0u; i < 256u; i++) { s += partial[i]; }
  out[0] = s * p.scale;
}
`;

const SUM_ROWS = { name: "reduce.sum_rows", code: SUM_ROWS_WGSL };
const SUM_PARTIAL = { name: "reduce.sum_partial", code: SUM_PARTIAL_WGSL };
const SUM_FINAL = { name: "reduce.sum_final", code: SUM_FINAL_WGSL };

/** out[j] = sum over rows of x[row, j]; x is (rows, cols). */
export function sumRowsKernel(
  g: Gpu,
  out: GPUBuffer,
  x: GPUBuffer,
  rows: number,
  cols: number,
): void {
  if (cols === 0) return;
  g.recorder.dispatch({
    kernel: SUM_ROWS,
    buffers: [x, out],
    params: new Params().u32(rows).u32(cols),
    workgroups: [ceilDiv(cols, 64)],
  });
}

/** out[0] = scale * sum of the first n elements of x. */
export function sumAllKernel(g: Gpu, out: GPUBuffer, x: GPUBuffer, n: number, scale = 1): void {
  const partial = g.pool.acquire(256 * 4);
  g.recorder.dispatch({
    kernel: SUM_PARTIAL,
    buffers: [x, partial],
    params: new Params().u32(n),
    workgroups: [1],
  });
  g.recorder.dispatch({
    kernel: SUM_FINAL,
    buffers: [partial, out],
    params: new Params().f32(scale),
    workgroups: [1],
  });
  g.pool.release(partial);
}
