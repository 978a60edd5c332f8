/**
 * Elementwise activations, forward and backward: ReLU and GELU (tanh form).
 *
 *   relu:  y = max(x, 0)                        dy/dx = [x > 0]
 *   gelu:  u = k0 (x + k1 x^3),  t = tanh(u),   y = 0.5 x (1 + t)
 *          dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) k0 (1 + 3 k1 x^2)
 *          with k0 = sqrt(2 / pi), k1 = 0.044715
 *
 * Layouts: flat f32 arrays of n elements.
 * Bindings: forward  x (read), y (write);
 *           backward x (read), dy (read), dx (write): dx = dy * f'(x).
 * ACT is an override constant (0 relu, 1 gelu), so each activation is its own
 * specialised pipeline. Launch: one thread per 4 elements (vec4 loads) when n
 * is a multiple of 4, else one per element; 256 threads per workgroup; 2-D
 * grid past 65535 groups.
 */
import { defineLaneKernels, type Kernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { Params } from "../util.ts";
import { bindings, flatEntry, type Lane } from "../wgsl.ts";

/** Activation codes of the `ACT` override constant. */
export const Activation = { relu: 0, gelu: 1 } as const;
/** Name of an activation. */
export type ActivationName = keyof typeof Activation;

/** Threads per workgroup of the activation kernels. */
export const ACTIVATION_WG = 256;

/**
 * WGSL of `act(v)` and `dact(v)` (the derivative) over `lane` values,
 * chosen by the `ACT` override; other kernels (the MoE FFN's) include it.
 * WGSL's arithmetic, max, select, clamp and tanh all accept both f32 and
 * vec4f, so both variants share one body. tanh's argument is clamped because
 * some backends compute it from exp(2u), which overflows to inf/inf = NaN
 * past |u| ~ 44; tanh(10) already rounds to 1 in f32, so the clamp changes
 * no result.
 */
export function activationFns(lane: Lane): string {
  return /* wgsl */ `
override ACT: u32 = 0u;
const K0 = 0.7978845608028654;
const K1 = 0.044715;

fn tanhu(v: ${lane}) -> ${lane} {
  return tanh(clamp(K0 * v * (1.0 + K1 * v * v), ${lane}(-10.0), ${lane}(10.0)));
}

fn act(v: ${lane}) -> ${lane} {
  if (ACT == 0u) { return max(v, ${lane}(0.0)); }
  return 0.5 * v * (1.0 + tanhu(v));
}

fn dact(v: ${lane}) -> ${lane} {
  if (ACT == 0u) { return select(${lane}(0.0), ${lane}(1.0), v > ${lane}(0.0)); }
  let t = tanhu(v);
  return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * K0 * (1.0 + 3.0 * K1 * v * v);
}
`;
}

function forwardSource(t: Lane): string {
  return activationFns(t) + /* wgsl */ `
${bindings`
  params n: u32
  read   x: array<${t}>
  write  y: array<${t}>
`}

${flatEntry(ACTIVATION_WG)}
  y[i] = act(x[i]);
}
`;
}

function backwardSource(t: Lane): string {
  return activationFns(t) + /* wgsl */ `
${bindings`
  params n: u32
  read   x: array<${t}>, dy: array<${t}>
  write  dx: array<${t}>
`}

${flatEntry(ACTIVATION_WG)}
  dx[i] = dy[i] * dact(x[i]);
}
`;
}

// One element or one vec4 per thread (n counted in lanes).
const FORWARD = defineLaneKernels("activation.forward", forwardSource);
const BACKWARD = defineLaneKernels("activation.backward", backwardSource);

// One thread per element, or per vec4 when n is a multiple of 4.
function dispatchLanes(
  g: Gpu,
  kernel: (vec4: boolean) => Kernel,
  act: ActivationName,
  buffers: GPUBuffer[],
  n: number,
): void {
  if (n === 0) return;
  const vec = n % 4 === 0;
  const lanes = vec ? n / 4 : n;
  g.recorder.dispatchFlat(lanes, ACTIVATION_WG, {
    kernel: kernel(vec),
    constants: { ACT: Activation[act] },
    buffers,
    params: new Params().u32(lanes),
  });
}

/** y[i] = act(x[i]) for i < n. */
export function activationForward(
  g: Gpu,
  act: ActivationName,
  y: GPUBuffer,
  x: GPUBuffer,
  n: number,
): void {
  dispatchLanes(g, FORWARD, act, [x, y], n);
}

/** dx[i] = dy[i] * act'(x[i]) for i < n. */
export function activationBackward(
  g: Gpu,
  act: ActivationName,
  dx: GPUBuffer,
  x: GPUBuffer,
  dy: GPUBuffer,
  n: number,
): void {
  dispatchLanes(g, BACKWARD, act, [x, dy, dx], n);
}
