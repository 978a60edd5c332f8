/**
 * Top-k indices along the last dim (expert selection; no gradient).
 *
 *   out[r, j] = index of the j-th largest of x[r, 0..n), j < k, in
 *               descending order of value; equal values go to the lower
 *               index first (ties go to the lower expert index)
 *
 * Layouts: x (rows, n) f32 row-major, out (rows, k) u32.
 *
 * Values are compared as u32 keys that order like the floats (sign bit
 * flipped, negative values' bits inverted, −0 folded onto +0), so the order
 * is total and exact and does not depend on how the compiler treats NaN:
 * NaN ranks above +∞ (as torch.topk does), −NaN below −∞.
 *
 * One thread per row (rows threads, 64 per group, 2-D grid past 65535
 * groups), k selection passes over the row: pass j takes the largest
 * (key, −index) strictly after the one pass j−1 took. O(k·n) per row, no
 * private arrays or workgroup memory; fine for expert counts (n ≤ a few
 * hundred). Bindings: x (read-only), out; params in group 1.
 */
import { defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { Params } from "../util.ts";
import { bindings, flatEntry } from "../wgsl.ts";

/** WGSL of topk.rows. */
/**
 * WGSL: f32 → u32 with the same order (−0 folded into +0), so that
 * comparisons of keys are exact and ties can be broken by index.
 */
export const ORDER_KEY_WGSL = /* wgsl */ `
fn orderKey(v: f32) -> u32 {
  var b = bitcast<u32>(v);
  if (b == 0x80000000u) { b = 0u; }
  if ((b & 0x80000000u) != 0u) { return ~b; }
  return b | 0x80000000u;
}
`;

export const TOPK_WGSL = /* wgsl */ `
${bindings`
  params rows: u32, n: u32, k: u32
  read   x: array<f32>
  write  out: array<u32>
`}

${ORDER_KEY_WGSL}
${flatEntry(64, { id: "r", bound: "p.rows" })}
  let base = r * p.n;
  var prevKey = 0u;
  var prevIdx = 0u;
  for (var j = 0u; j < p.k; j++) {
    var bestKey = 0u;
    var bestIdx = p.n;
    for (var e = 0u; e < p.n; e++) {
      let key = orderKey(x[base + e]);
      // Still available: ranked after the previous pick (key desc, index asc).
      let after = j == 0u || key < prevKey || (key == prevKey && e > prevIdx);
      // Scanning e upwards with a strict > keeps the lowest index among equal keys.
      if (after && (bestIdx == p.n || key > bestKey)) {
        bestKey = key;
        bestIdx = e;
      }
    }
    out[r * p.k + j] = bestIdx;
    prevKey = bestKey;
    prevIdx = bestIdx;
  }
}
`;

const TOPK = defineKernel("topk.rows", () => TOPK_WGSL);

/** out (rows, k) u32 = indices of the k largest of each row of x (rows, n), descending. */
export function topkKernel(
  g: Gpu,
  out: GPUBuffer,
  x: GPUBuffer,
  rows: number,
  n: number,
  k: number,
): void {
  if (rows * k === 0) return;
  g.recorder.dispatchFlat(rows, 64, {
    kernel: TOPK,
    buffers: [x, out],
    params: new Params().u32(rows).u32(n).u32(k),
  });
}
