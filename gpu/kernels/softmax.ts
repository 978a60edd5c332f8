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
import { defineLaneKernels, type Kernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { Params } from "../util.ts";
import { bindings, flatEntry, hsum, type Lane } from "../wgsl.ts";

const WG = 64;

function header(t: Lane): string {
  const vec = t !== "f32";
  return /* wgsl */ `
alias T = ${t};
fn hsum(v: T) -> f32 { return ${hsum(t)}; }
fn hmax(v: T) -> f32 { return ${vec ? "max(max(v.x, v.y), max(v.z, v.w))" : "v"}; }
`;
}

function forwardSource(t: Lane): string {
  return header(t) + /* wgsl */ `
${bindings`
  params rows: u32, c: u32
  read   x: array<T>
  write  y: array<T>
`}

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

function backwardSource(t: Lane): string {
  return header(t) + /* wgsl */ `
${bindings`
  params rows: u32, c: u32
  read   y: array<T>, dy: array<T>
  write  dx: array<T>
`}

${flatEntry(WG, { id: "r", bound: "p.rows" })}
  let base = r * p.c;
  var s = T(0.0);
  for (var j = 0u; j < p.c; j++) { s += dy[base + j] * y[base + j]; }
  let d = hsum(s);
  for (var j = 0u; j < p.c; j++) { dx[base + j] = y[base + j] * (dy[base + j] - d); }
}
`;
}

// Scalar or vec4 loads (C counted in lanes).
const FORWARD = defineLaneKernels("softmax.forward", forwardSource);
const BACKWARD = defineLaneKernels("softmax.backward", backwardSource);

/** Sizes of a softmax launch: rows of length c. */
export interface SoftmaxSizes {
  /** Rows (product of the leading dims). */
  rows: number;
  /** Length of a row (the last dim). */
  c: number;
}

// One thread per row, vec4 loads when c is a multiple of 4.
function dispatchRows(
  g: Gpu,
  kernel: (vec4: boolean) => Kernel,
  buffers: GPUBuffer[],
  { rows, c }: SoftmaxSizes,
): void {
  if (rows === 0 || c === 0) return;
  const vec = c % 4 === 0;
  g.recorder.dispatchFlat(rows, WG, {
    kernel: kernel(vec),
    buffers,
    params: new Params().u32(rows).u32(vec ? c / 4 : c),
  });
}

/** y = softmax(x) over rows of length c; x and y are (rows, c). */
export function softmaxForward(g: Gpu, y: GPUBuffer, x: GPUBuffer, sz: SoftmaxSizes): void {
  dispatchRows(g, FORWARD, [x, y], sz);
}

/** dx = y * (dy - rowsum(dy * y)), from the forward's output y. */
export function softmaxBackward(
  g: Gpu,
  dx: GPUBuffer,
  y: GPUBuffer,
  dy: GPUBuffer,
  sz: SoftmaxSizes,
): void {
  dispatchRows(g, BACKWARD, [y, dy, dx], sz);
}
