/**
 * What a kernel is: a name (used in error messages, labels and profiles),
 * its WGSL, and the override constants that specialise it.
 *
 * Binding convention (every kernel follows it): group 0 holds the storage
 * buffers, read-only inputs first, then outputs; group 1 binding 0 is the
 * uniform params struct. Every declared binding must be used by `main`,
 * since pipelines use the automatic layout.
 */

import type { Lane } from "./wgsl.ts";

/** A WGSL compute kernel with entry point `main`. */
export interface Kernel {
  /** Unique, stable name: `<family>.<job>` such as `matmul.reg4`. */
  readonly name: string;
  /** WGSL source. */
  readonly code: string;
}

/** Override constants of a pipeline (tile shapes, flags). */
export type Constants = Record<string, number>;

/** Cache key of a kernel specialised by constants. */
export function pipelineKey(kernel: Kernel, constants?: Constants): string {
  if (!constants) return kernel.name;
  const keys = Object.keys(constants).sort();
  return kernel.name + "|" + keys.map((k) => `${k}=${constants[k]}`).join(",");
}

const KERNELS = new Map<string, Kernel>();

/**
 * The kernel called `name`, its WGSL made by `make` on first use. The one
 * cache of every kernel file: a name stands for one source, so generated
 * variants put what they vary on in the name (`matmul.register_4x4_8x8`).
 */
export function defineKernel(name: string, make: () => string): Kernel {
  let k = KERNELS.get(name);
  if (!k) KERNELS.set(name, k = { name, code: make() });
  return k;
}

/**
 * The scalar and vec4 variants of one WGSL template, `name` over f32 and
 * `name4` over vec4f (launchers pick vec4 where the sizes are multiples of
 * 4): returns the pick.
 */
export function defineLaneKernels(
  name: string,
  make: (lane: Lane) => string,
): (vec4: boolean) => Kernel {
  const f32 = defineKernel(name, () => make("f32"));
  const vec4f = defineKernel(name + "4", () => make("vec4f"));
  return (vec4) => vec4 ? vec4f : f32;
}
