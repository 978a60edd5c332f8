/**
 * fill: out[i] = value, for f32 or u32 data (the value's bits are passed
 * as a u32 so one kernel serves both).
 *
 * Launch: one thread per element, 256 per workgroup, 2-D grid past 65535 groups.
 */
import { defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { Params } from "../util.ts";
import { bindings, flatEntry } from "../wgsl.ts";

const WG = 256;

/** WGSL of fill. */
export const FILL_WGSL = /* wgsl */ `
${bindings`
  params n: u32, bits: u32
  write  out: array<u32>
`}

${flatEntry(WG)}
  out[i] = p.bits;
}
`;

const FILL = defineKernel("fill", () => FILL_WGSL);

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
  g.recorder.dispatchFlat(n, WG, {
    kernel: FILL,
    buffers: [out],
    params: new Params().u32(n).u32(bits),
  });
}
