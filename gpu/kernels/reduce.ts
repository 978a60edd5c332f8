/**
 * Reductions.
 *
 *   sumRows: out[j] = sum_i x[i * cols + j]   (sum over leading dims; the
 *            backward of a broadcast). One thread per column, looping over
 *            rows in order, so the result is deterministic.
 *   sumAll:  out[0] = sum_i x[i]. Two passes: 256 threads each sum a strided
 *            slice into partials, then one thread sums the partials in order.
 *   sumLast: out[r] = scale * sum_j x[r * cols + j]   (sum / mean over the
 *            last dim). One thread per row, 64 per workgroup, 2-D grid past
 *            65535 groups; vec4 loads when cols is a multiple of 4.
 *   expandRows: out[r * cols + j] = scale * src[r]   (the backward of sumLast,
 *            and of sumAll with rows = 1). One thread per element (per vec4
 *            when cols is a multiple of 4), 256 per workgroup, 2-D grid.
 * Bindings: inputs, then the output; params in group 1.
 */
import { defineKernel, defineLaneKernels } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { ceilDiv, Params } from "../util.ts";
import { bindings, flatEntry, hsum, type Lane } from "../wgsl.ts";

/** WGSL of sumRows. */
export const SUM_ROWS_WGSL = /* wgsl */ `
${bindings`
  params rows: u32, cols: u32
  read   x: array<f32>
  write  out: array<f32>
`}

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
// POSITIVE counts x > 0 instead of summing x (the activation ratio of a ReLU output).
override POSITIVE: bool = false;
${bindings`
  params n: u32
  read   x: array<f32>
  write  partial: array<f32>
`}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  var s = 0.0;
  for (var i = gid.x; i < p.n; i += 256u) {
    let v = x[i];
    s += select(v, select(0.0, 1.0, v > 0.0), POSITIVE);
  }
  partial[gid.x] = s;
}
`;

/** WGSL of the second sumAll pass: out[0] = scale * sum(partial[0..256)). */
export const SUM_FINAL_WGSL = /* wgsl */ `
${bindings`
  params scale: f32
  read   partial: array<f32>
  write  out: array<f32>
`}

@compute @workgroup_size(1)
fn main() {
  var s = 0.0;
  for (var i = 0u; i < 256u; i++) { s += partial[i]; }
  out[0] = s * p.scale;
}
`;

const SUM_ROWS = defineKernel("reduce.sum_rows", () => SUM_ROWS_WGSL);
const SUM_PARTIAL = defineKernel("reduce.sum_partial", () => SUM_PARTIAL_WGSL);
const SUM_FINAL = defineKernel("reduce.sum_final", () => SUM_FINAL_WGSL);

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

/**
 * out[0] = scale * sum of the first n elements of x; with `positive`, the
 * count of elements > 0 instead of their sum.
 */
export function sumAllKernel(
  g: Gpu,
  out: GPUBuffer,
  x: GPUBuffer,
  n: number,
  scale = 1,
  positive = false,
): void {
  const partial = g.pool.acquire(256 * 4);
  g.recorder.dispatch({
    kernel: SUM_PARTIAL,
    constants: positive ? { POSITIVE: 1 } : undefined,
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

function sumLastSource(t: Lane): string {
  return /* wgsl */ `
alias T = ${t};
${bindings`
  params rows: u32, cols: u32, scale: f32
  read   x: array<T>
  write  out: array<f32>
`}

${flatEntry(64, { id: "r", bound: "p.rows" })}
  var s = T(0.0);
  for (var j = 0u; j < p.cols; j++) { s += x[r * p.cols + j]; }
  out[r] = (${hsum(t, "s")}) * p.scale;
}
`;
}

/** WGSL of expandRows, one `lane` of out per thread (n and cols counted in lanes). */
function expandRowsSource(lane: Lane): string {
  return /* wgsl */ `
${bindings`
  params n: u32, cols: u32, scale: f32
  read   src: array<f32>
  write  out: array<${lane}>
`}

${flatEntry(256)}
  out[i] = ${lane}(src[i / p.cols] * p.scale);
}
`;
}

// Scalar or vec4 lanes.
const SUM_LAST = defineLaneKernels("reduce.sum_last", sumLastSource);
const EXPAND_ROWS = defineLaneKernels("reduce.expand_rows", expandRowsSource);

/** out[r] = scale * sum_j x[r, j]; x is (rows, cols), out is (rows). */
export function sumLastKernel(
  g: Gpu,
  out: GPUBuffer,
  x: GPUBuffer,
  rows: number,
  cols: number,
  scale = 1,
): void {
  if (rows === 0) return;
  const vec = cols % 4 === 0;
  g.recorder.dispatchFlat(rows, 64, {
    kernel: SUM_LAST(vec),
    buffers: [x, out],
    params: new Params().u32(rows).u32(vec ? cols / 4 : cols).f32(scale),
  });
}

/** out[r, j] = scale * src[r]; src is (rows), out is (rows, cols). */
export function expandRowsKernel(
  g: Gpu,
  out: GPUBuffer,
  src: GPUBuffer,
  rows: number,
  cols: number,
  scale = 1,
): void {
  const n = rows * cols;
  if (n === 0) return;
  const vec = cols % 4 === 0;
  const lanes = vec ? n / 4 : n;
  g.recorder.dispatchFlat(lanes, 256, {
    kernel: EXPAND_ROWS(vec),
    buffers: [src, out],
    params: new Params().u32(lanes).u32(vec ? cols / 4 : cols).f32(scale),
  });
}
