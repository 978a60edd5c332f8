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
import { defineKernel, defineLaneKernels } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { Params } from "../util.ts";
import { bindings, flatEntry, type Lane } from "../wgsl.ts";

/** Binary op codes of the `OP` override constant. */
export const BinaryOp = { add: 0, sub: 1, mul: 2 } as const;
/** Name of a binary op. */
export type BinaryOpName = keyof typeof BinaryOp;

const WG = 256;

/** WGSL of the binary kernel over `lane`s (n and nb counted in lanes). */
export function binaryWgsl(lane: Lane): string {
  const T = `array<${lane}>`;
  return /* wgsl */ `
override OP: u32 = 0u;
${bindings`
  params n: u32, nb: u32
  read   a: ${T}, b: ${T}
  write  out: ${T}
`}

${flatEntry(WG)}
  let x = a[i];
  let y = b[i % p.nb];
  var r: ${lane};
  if (OP == 0u) { r = x + y; } else if (OP == 1u) { r = x - y; } else { r = x * y; }
  out[i] = r;
}
`;
}

/** WGSL of scale: out = a * s. */
export const SCALE_WGSL = /* wgsl */ `
${bindings`
  params n: u32, s: f32
  read   a: array<f32>
  write  out: array<f32>
`}

${flatEntry(WG)}
  out[i] = a[i] * p.s;
}
`;

const BINARY = defineLaneKernels("elementwise.binary", binaryWgsl);
const SCALE = defineKernel("elementwise.scale", () => SCALE_WGSL);

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
  g.recorder.dispatchFlat(lanes, WG, {
    kernel: BINARY(vec),
    constants: { OP: BinaryOp[op] },
    buffers: [a, b, out],
    params: new Params().u32(lanes).u32(vec ? nb / 4 : nb),
  });
}

/** out[i] = a[i] * s, for i < n. */
export function scaleKernel(g: Gpu, out: GPUBuffer, a: GPUBuffer, n: number, s: number): void {
  if (n === 0) return;
  g.recorder.dispatchFlat(n, WG, {
    kernel: SCALE,
    buffers: [a, out],
    params: new Params().u32(n).f32(s),
  });
}
