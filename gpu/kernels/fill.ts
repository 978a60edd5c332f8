/**
 * fill: out[i] = value, for f32 or u32 data (the value's bits are passed
 * as a u32 so one kernel serves both).
 *
 * Launch: one thread per element, 256 per workgroup, 2-D grid past 65535 groups.
 */
import type { Gpu } from "../runtime.ts";
import { ceilDiv, grid1d, Params } from "../util.ts";

/** WGSL of fill. */
export const FILL_WGSL = /* wgsl */ `
struct P { n: u32, bits: u32, nx: u32 }
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(1) @binding(0) var<uniform> p: P;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.nx * 256u + gid.x;
  if (i < p.n) { out[i] = p.bits; }
}
`;

const FILL = { name: "fill", code: FILL_WGSL };

/** Fills the first `n` elements of `out` with `value`. */
export function fillKernel(
  g: Gpu,
  out: GPUBuffer,
  n: number,
  value: number,
  dtype: "f32" | "u32",
): void {
  if (n === 0) return;
  const bits = dtype === "u32" ? value >>> 0 : new Uint32Array(new Float32Array([value]).buffer)[0];
  const [nx, ny] = grid1d(ceilDiv(n, 256));
  g.recorder.dispatch({
    kernel: FILL,
    buffers: [out],
    params: new Params().u32(n).u32(bits).u32(nx),
    workgroups: [nx, ny],
  });
}
