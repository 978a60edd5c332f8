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
import { defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { ceilDiv, flatGrid, Params } from "../util.ts";
import { bindings, flatEntry } from "../wgsl.ts";

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

function sumLastSource(t: string): string {
  const hsum = t === "f32" ? "v" : "v.x + v.y + v.z + v.w";
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
  let v = s;
  out[r] = (${hsum}) * p.scale;
}
`;
}

/** WGSL of sumLast, scalar loads. */
export const SUM_LAST_WGSL = sumLastSource("f32");
/** WGSL of sumLast, vec4 loads (cols counted in vec4s). */
export const SUM_LAST4_WGSL = sumLastSource("vec4f");

/** WGSL of expandRows, one element per thread. */
export const EXPAND_ROWS_WGSL = /* wgsl */ `
${bindings`
  params n: u32, cols: u32, scale: f32
  read   src: array<f32>
  write  out: array<f32>
`}

${flatEntry(256)}
  out[i] = src[i / p.cols] * p.scale;
}
`;

/** WGSL of expandRows, one vec4 per thread (n and cols counted in vec4s). */
export const EXPAND_ROWS4_WGSL = /* wgsl */ `
${bindings`
  params n: u32, cols: u32, scale: f32
  read   src: array<f32>
  write  out: array<vec4f>
`}

${flatEntry(256)}
  out[i] = vec4f(src[i / p.cols] * p.scale);
}
`;

const SUM_LAST = defineKernel("reduce.sum_last", () => SUM_LAST_WGSL);
const SUM_LAST4 = defineKernel("reduce.sum_last4", () => SUM_LAST4_WGSL);
const EXPAND_ROWS = defineKernel("reduce.expand_rows", () => EXPAND_ROWS_WGSL);
const EXPAND_ROWS4 = defineKernel("reduce.expand_rows4", () => EXPAND_ROWS4_WGSL);

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
  const workgroups = flatGrid(rows, 64);
  g.recorder.dispatch({
    kernel: vec ? SUM_LAST4 : SUM_LAST,
    buffers: [x, out],
    params: new Params().u32(rows).u32(vec ? cols / 4 : cols).f32(scale),
    workgroups,
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
  const workgroups = flatGrid(lanes, 256);
  g.recorder.dispatch({
    kernel: vec ? EXPAND_ROWS4 : EXPAND_ROWS,
    buffers: [src, out],
    params: new Params().u32(lanes).u32(vec ? cols / 4 : cols).f32(scale),
    workgroups,
  });
}
