/**
 * Elementwise binary ops with broadcasting over leading dims, and scale.
 *
 *   binary: out[i] = a[i] OP b[i % nb]    (b's shape is a suffix of a's)
 *   scale:  out[i] = a[i] * s
 *
 * OP is an override constant (0 add, 1 sub, 2 mul) so each op is its own
 * specialised pipeline. Launch: one thread per 4 elements (vec4 loads) when
 * n and nb are multiples of 4, else one per element; 256 threads per
 * workgroup; 2-D grid past 65535 groups.
 */
import type { Gpu } from "../runtime.ts";
import { ceilDiv, grid1d, Params } from "../util.ts";

/** Binary op codes of the `OP` override constant. */
export const BinaryOp = { add: 0, sub: 1, mul: 2 } as const;
/** Name of a binary op. */
export type BinaryOpName = keyof typeof BinaryOp;

/** WGSL of the scalar binary kernel. */
export const BINARY_WGSL = /* wgsl */ `
override OP: u32 = 0u;
struct P { n: u32, nb: u32, nx: u32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(1) @binding(0) var<uniform> p: P;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.nx * 256u + gid.x;
  if (i >= p.n) { return; }
  let x = a[i];
  let y = b[i % p.nb];
  var r: f32;
  if (OP == 0u) { r = x + y; } else if (OP == 1u) { r = x - y; } else { r = x * y; }
  out[i] = r;
}
`;

/** WGSL of the vec4 binary kernel (n and nb counted in vec4s). */
export const BINARY4_WGSL = /* wgsl */ `
override OP: u32 = 0u;
struct P { n: u32, nb: u32, nx: u32 }
@group(0) @binding(0) var<storage, read> a: array<vec4f>;
@group(0) @binding(1) var<storage, read> b: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4f>;
@group(1) @binding(0) var<uniform> p: P;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.nx * 256u + gid.x;
  if (i >= p.n) { return; }
  let x = a[i];
  let y = b[i % p.nb];
  var r: vec4f;
  if (OP == 0u) { r = x + y; } else if (OP == 1u) { r = x - y; } else { r = x * y; }
  out[i] = r;
}
`;

/** WGSL of scale: out = a * s (vec4 when n is a multiple of 4, via VEC). */
export const SCALE_WGSL = /* wgsl */ `
struct P { n: u32, s: f32, nx: u32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(1) @binding(0) var<uniform> p: P;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.nx * 256u + gid.x;
  if (i < p.n) { out[i] = a[i] * p.s; }
}
`;

const BINARY = { name: "elementwise.binary", code: BINARY_WGSL };
const BINARY4 = { name: "elementwise.binary4", code: BINARY4_WGSL };
const SCALE = { name: "elementwise.scale", code: SCALE_WGSL };

/** out[i] = a[i] OP b[i % nb], for i < n. */
export function binaryKernel(
  g: Gpu,
  op: BinaryOpName,
  out: GPUBuffer,
  a: GPUBuffer,
  b: GPUBuffer,
  n: number,
  nb: number,
): void {
  if (n === 0) return;
  const vec = n % 4 === 0 && nb % 4 === 0;
  const lanes = vec ? n / 4 : n;
  const [nx, ny] = grid1d(ceilDiv(lanes, 256));
  g.recorder.dispatch({
    kernel: vec ? BINARY4 : BINARY,
    constants: { OP: BinaryOp[op] },
    buffers: [a, b, out],
    params: new Params().u32(lanes).u32(vec ? nb / 4 : nb).u32(nx),
    workgroups: [nx, ny],
  });
}

/** out[i] = a[i] * s, for i < n. */
export function scaleKernel(g: Gpu, out: GPUBuffer, a: GPUBuffer, n: number, s: number): void {
  if (n === 0) return;
  const [nx, ny] = grid1d(ceilDiv(n, 256));
  g.recorder.dispatch({
    kernel: SCALE,
    buffers: [a, out],
    params: new Params().u32(n).f32(s).u32(nx),
    workgroups: [nx, ny],
  });
}
