/**
 * Softmax over the last dim, numerically stable.
 *
 *   forward:  m_r = max_j x[r, j]
 *             y[r, j] = exp(x[r, j] - m_r) / sum_k exp(x[r, k] - m_r)
 *   backward: dx[r, j] = y[r, j] * (dy[r, j] - sum_k dy[r, k] * y[r, k])
 *
 * Layouts: x, y, dy, dx are (rows, C) row-major.
 * Bindings: forward x -> y; backward y, dy -> dx.
 * Launch: one thread per row (three passes over the row forward, two
 * backward), 64 threads per workgroup, 2-D grid past 65535 groups. Thread-
 * per-row suits llvmpipe, where workgroup shared memory is slow, for C up to
 * ~1024. Rows are read as vec4s when C is a multiple of 4 (C is then counted
 * in vec4s in the params).
 */
import { defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { flatGrid, Params } from "../util.ts";
import { flatEntry } from "../wgsl.ts";

const WG = 64;

function header(t: string): string {
  const vec = t !== "f32";
  return /* wgsl */ `
alias T = ${t};
struct P { rows: u32, c: u32 }
fn hsum(v: T) -> f32 { return ${vec ? "v.x + v.y + v.z + v.w" : "v"}; }
fn hmax(v: T) -> f32 { return ${vec ? "max(max(v.x, v.y), max(v.z, v.w))" : "v"}; }
`;
}

function forwardSource(t: string): string {
  return header(t) + /* wgsl */ `
@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read_write> y: array<T>;
@group(1) @binding(0) var<uniform> p: P;

${flatEntry(WG, { id: "r", bound: "p.rows" })}
  let base = r * p.c;
  var mv = x[base];
  for (var j = 1u; j < p.c; j++) { mv = max(mv, x[base + j]); }
  let m = hmax(mv);
  var s = T(0.0);
  for (var j = 0u; j < p.c; j++) { s += exp(x[base + j] - m); }
  let inv = 1.0 / hsum(s);
  for (var j = 0u; j < p.c; j++) { y[base + j] = exp(x[base + j] - m) * inv; }
}
`;
}

function backwardSource(t: string): string {
  return header(t) + /* wgsl */ `
@group(0) @binding(0) var<storage, read> y: array<T>;
@group(0) @binding(1) var<storage, read> dy: array<T>;
@group(0) @binding(2) var<storage, read_write> dx: array<T>;
@group(1) @binding(0) var<uniform> p: P;

${flatEntry(WG, { id: "r", bound: "p.rows" })}
  let base = r * p.c;
  var s = T(0.0);
  for (var j = 0u; j < p.c; j++) { s += dy[base + j] * y[base + j]; }
  let d = hsum(s);
  for (var j = 0u; j < p.c; j++) { dx[base + j] = y[base + j] * (dy[base + j] - d); }
}
`;
}

/** WGSL of the forward, scalar loads. */
export const SOFTMAX_FORWARD_WGSL = forwardSource("f32");
/** WGSL of the forward, vec4 loads (C counted in vec4s). */
export const SOFTMAX_FORWARD4_WGSL = forwardSource("vec4f");
/** WGSL of the backward, scalar loads. */
export const SOFTMAX_BACKWARD_WGSL = backwardSource("f32");
/** WGSL of the backward, vec4 loads (C counted in vec4s). */
export const SOFTMAX_BACKWARD4_WGSL = backwardSource("vec4f");

const FORWARD = defineKernel("softmax.forward", () => SOFTMAX_FORWARD_WGSL);
const FORWARD4 = defineKernel("softmax.forward4", () => SOFTMAX_FORWARD4_WGSL);
const BACKWARD = defineKernel("softmax.backward", () => SOFTMAX_BACKWARD_WGSL);
const BACKWARD4 = defineKernel("softmax.backward4", () => SOFTMAX_BACKWARD4_WGSL);

function launch(rows: number, c: number) {
  const vec = c % 4 === 0;
  const workgroups = flatGrid(rows, WG);
  return { vec, workgroups, params: new Params().u32(rows).u32(vec ? c / 4 : c) };
}

/** y = softmax(x) over rows of length c; x and y are (rows, c). */
export function softmaxForward(
  g: Gpu,
  y: GPUBuffer,
  x: GPUBuffer,
  rows: number,
  c: number,
): void {
  if (rows === 0 || c === 0) return;
  const { vec, workgroups, params } = launch(rows, c);
  g.recorder.dispatch({
    kernel: vec ? FORWARD4 : FORWARD,
    buffers: [x, y],
    params,
    workgroups,
  });
}

/** dx = y * (dy - rowsum(dy * y)), from the forward's output y. */
export function softmaxBackward(
  g: Gpu,
  dx: GPUBuffer,
  y: GPUBuffer,
  dy: GPUBuffer,
  rows: number,
  c: number,
): void {
  if (rows === 0 || c === 0) return;
  const { vec, workgroups, params } = launch(rows, c);
  g.recorder.dispatch({
    kernel: vec ? BACKWARD4 : BACKWARD,
    buffers: [y, dy, dx],
    params,
    workgroups,
  });
}
