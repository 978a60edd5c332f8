/**
 * AdamW update, one fused kernel per parameter tensor.
 *
 * Math (torch.optim.AdamW, decoupled weight decay, same operation order):
 *
 *   g  = grad[i] * gscale[0]              (gscale: clip factor, on the GPU)
 *   p  = p * (1 - lr * wd)                (decay first, from the old p)
 *   m  = b1 * m + (1 - b1) * g
 *   v  = b2 * v + (1 - b2) * g * g
 *   p  = p - (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
 *
 * with bc1 = 1 - b1^t and bc2 = 1 - b2^t for step t (1-based). The host
 * folds the scalars in float64 (`decay` = 1 - lr * wd, `stepSize` = lr / bc1,
 * `bc2Sqrt` = sqrt(bc2), `c1` = 1 - b1, `c2` = 1 - b2) so the kernel sees the
 * same rounded constants torch passes to its per-tensor ops.
 *
 * Layout: p, m, v, grad are flat f32 arrays of n elements; gscale is one f32.
 * Bindings: group 0 = grad (read), gscale (read), p (read_write),
 * m (read_write), v (read_write), and for the masked variant the expert
 * counts (read; bound last, after the outputs, so the binding numbers of the
 * shared part stay the same); group 1 = params.
 * Launch: one thread per element, or per vec4 when n is a multiple of 4;
 * 256 threads per workgroup; 2-D grid past 65535 groups (`grid1d`).
 * p, m and v are updated in place: the parameter's storage is the model's.
 */
import { defineKernel, defineLaneKernels } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { Params } from "../util.ts";
import { bindings, flatEntry } from "../wgsl.ts";

/**
 * WGSL of the update for `t` lanes. `masked` adds the expert mask of sparse
 * MoE steps: element i belongs to expert e = (i % p.modulo) / p.divisor and
 * is left untouched (p, m and v alike) when `counts[e]` is 0, i.e. that
 * expert received no token this step (scalar lanes only).
 */
function adamwWgsl(t: "f32" | "vec4f", masked = false): string {
  return /* wgsl */ `
${bindings`
  params n: u32, decay: f32, stepSize: f32
  params bc2Sqrt: f32, eps: f32, b1: f32, c1: f32
  params b2: f32, c2: f32, modulo: u32, divisor: u32
  read   grad: array<${t}>, gscale: array<f32>
  ${masked ? "read   counts: array<u32>" : ""}
  write  param: array<${t}>, m1: array<${t}>, m2: array<${t}>
`}

${flatEntry(256)}
  ${masked ? "if (counts[(i % p.modulo) / p.divisor] == 0u) { return; }" : ""}
  let g = grad[i] * gscale[0];
  let m = p.b1 * m1[i] + p.c1 * g;
  let v = p.b2 * m2[i] + p.c2 * (g * g);
  m1[i] = m;
  m2[i] = v;
  let decayed = param[i] * p.decay;
  param[i] = decayed - p.stepSize * (m / (sqrt(v) / p.bc2Sqrt + p.eps));
}
`;
}

/** WGSL of AdamW with the expert mask of sparse MoE steps (see `adamwWgsl`). */
export const ADAMW_MASKED_WGSL = adamwWgsl("f32", true);

// Scalar or vec4 lanes (n counted in lanes).
const ADAMW = defineLaneKernels("optim.adamw", (lane) => adamwWgsl(lane));
const ADAMW_MASKED = defineKernel("optim.adamw_masked", () => ADAMW_MASKED_WGSL);

/** Which expert each element of a parameter belongs to: e = (i % modulo) / divisor. */
export interface ExpertMask {
  /** (E) u32 tokens routed to each expert this step; 0 = leave its elements untouched. */
  counts: GPUBuffer;
  /** Period of the expert pattern in elements (the element count for row blocks). */
  modulo: number;
  /** Elements per expert within one period. */
  divisor: number;
}

/** Scalars of one AdamW update (host values, folded in float64 before the f32 cast). */
export interface AdamWStepArgs {
  /** Learning rate of this step. */
  lr: number;
  /** Exponential decay of the first moment. */
  beta1: number;
  /** Exponential decay of the second moment. */
  beta2: number;
  /** Added to sqrt(v-hat). */
  eps: number;
  /** Decoupled weight decay (0 for no-decay parameters). */
  weightDecay: number;
  /** 1-based step number, for the bias corrections. */
  step: number;
}

/**
 * Records one AdamW update of n elements: p, m and v in place, grad scaled
 * by `gscale[0]` (a one-element f32 buffer: the clip factor, or 1). With a
 * `mask`, elements of experts that received no token are left untouched.
 */
export function adamwKernel(
  g: Gpu,
  param: GPUBuffer,
  m: GPUBuffer,
  v: GPUBuffer,
  grad: GPUBuffer,
  gscale: GPUBuffer,
  n: number,
  a: AdamWStepArgs,
  mask?: ExpertMask,
): void {
  if (n === 0) return;
  if (!(a.step >= 1)) throw new RangeError(`adamwKernel(): step must be >= 1, got ${a.step}`);
  const bc1 = 1 - a.beta1 ** a.step;
  const bc2 = 1 - a.beta2 ** a.step;
  // The mask reads one expert count per element: scalar lanes.
  const vec = n % 4 === 0 && !mask;
  const lanes = vec ? n / 4 : n;
  g.recorder.dispatchFlat(lanes, 256, {
    kernel: mask ? ADAMW_MASKED : ADAMW(vec),
    buffers: mask ? [grad, gscale, mask.counts, param, m, v] : [grad, gscale, param, m, v],
    params: new Params()
      .u32(lanes).f32(1 - a.lr * a.weightDecay).f32(a.lr / bc1)
      .f32(Math.sqrt(bc2)).f32(a.eps).f32(a.beta1).f32(1 - a.beta1)
      .f32(a.beta2).f32(1 - a.beta2).u32(mask?.modulo ?? 1).u32(mask?.divisor ?? 1),
  });
}
