/**
 * Fused cross-entropy over the vocabulary (softmax + negative log-likelihood
 * + mean in one op, never materialising the probabilities in the forward).
 *
 *   lse[n]  = log Σ_v exp(x[n, v])                 (max-subtracted)
 *   loss    = (1/N) Σ_n (lse[n] − x[n, t[n]])
 *   dx[n,v] = (exp(x[n, v] − lse[n]) − [v = t[n]]) · dLoss / N
 *
 * Layouts: logits x (N, V) f32 row-major, targets t (N) u32, lse (N) f32
 * (saved for the backward), loss a single f32, dLoss a single f32.
 *
 * A target ≥ V (not checkable on the host without a read-back) makes that
 * row's loss NaN, hence the mean NaN, and its gradient row NaN: a bad batch
 * shows up at the first logged loss instead of silently lowering it.
 *
 * Kernels (bindings: read-only inputs, then outputs; params in group 1):
 *   cross_entropy.rows      logits, targets → lse, rowLoss.
 *                           One thread per row (N threads, 64 per group): max,
 *                           then Σ exp, serially over V (no workgroup memory,
 *                           which is slow on llvmpipe).
 *   reduce.sum_partial/final  the mean of rowLoss (gpu/kernels/reduce.ts):
 *                           fixed-order partial sums, so the loss is
 *                           deterministic (no atomics).
 *   cross_entropy.backward  logits, targets, lse, dLoss → dlogits.
 *                           One thread per element (N·V threads, 256 per group).
 * 2-D grids past 65535 groups (grid1d).
 */
import { defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { Params } from "../util.ts";
import { bindings, flatEntry } from "../wgsl.ts";
import { sumAllKernel } from "./reduce.ts";

/** WGSL of cross_entropy.rows. */
export const CROSS_ENTROPY_ROWS_WGSL = /* wgsl */ `
${bindings`
  params N: u32, V: u32
  read   x: array<f32>, targets: array<u32>
  write  lse: array<f32>, rowLoss: array<f32>
`}

${flatEntry(64, { id: "n", bound: "p.N" })}
  let o = n * p.V;
  var m = x[o];
  for (var v = 1u; v < p.V; v++) { m = max(m, x[o + v]); }
  var s = 0.0;
  for (var v = 0u; v < p.V; v++) { s += exp(x[o + v] - m); }
  let l = m + log(s);
  lse[n] = l;
  let t = targets[n];
  var loss = bitcast<f32>(0x7fc00000u); // NaN for an out-of-range target
  if (t < p.V) { loss = l - x[o + t]; }
  rowLoss[n] = loss;
}
`;

/** WGSL of cross_entropy.backward. */
export const CROSS_ENTROPY_BACKWARD_WGSL = /* wgsl */ `
${bindings`
  params n: u32, V: u32, invN: f32
  read   x: array<f32>, targets: array<u32>, lse: array<f32>, dLoss: array<f32>
  write  dx: array<f32>
`}

${flatEntry(256)}
  let row = i / p.V;
  let v = i % p.V;
  let t = targets[row];
  var g = exp(x[i] - lse[row]);
  if (v == t) { g -= 1.0; }
  if (t >= p.V) { g = bitcast<f32>(0x7fc00000u); }
  dx[i] = g * dLoss[0] * p.invN;
}
`;

const ROWS = defineKernel("cross_entropy.rows", () => CROSS_ENTROPY_ROWS_WGSL);
const BACKWARD = defineKernel("cross_entropy.backward", () => CROSS_ENTROPY_BACKWARD_WGSL);

/**
 * Forward: loss[0] = mean cross-entropy of logits (N, V) against targets (N),
 * and lse (N) saved for the backward. Three dispatches and a pooled (N) temporary.
 */
export function crossEntropyForward(
  g: Gpu,
  loss: GPUBuffer,
  lse: GPUBuffer,
  logits: GPUBuffer,
  targets: GPUBuffer,
  N: number,
  V: number,
): void {
  const rowLoss = g.pool.acquire(N * 4, "cross_entropy.row_loss");
  g.recorder.dispatchFlat(N, 64, {
    kernel: ROWS,
    buffers: [logits, targets, lse, rowLoss],
    params: new Params().u32(N).u32(V),
  });
  sumAllKernel(g, loss, rowLoss, N, 1 / N);
  g.pool.release(rowLoss);
}

/** Backward: dlogits (N, V) from dLoss (one f32), logits, targets and the saved lse. */
export function crossEntropyBackward(
  g: Gpu,
  dlogits: GPUBuffer,
  dLoss: GPUBuffer,
  logits: GPUBuffer,
  targets: GPUBuffer,
  lse: GPUBuffer,
  N: number,
  V: number,
): void {
  const n = N * V;
  if (n === 0) return;
  g.recorder.dispatchFlat(n, 256, {
    kernel: BACKWARD,
    buffers: [logits, targets, lse, dLoss, dlogits],
    params: new Params().u32(n).u32(V).f32(1 / N),
  });
}
