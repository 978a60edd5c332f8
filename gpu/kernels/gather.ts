/**
 * Row gather and deterministic row scatter-add by a u32 index tensor (the
 * embedding lookup and its backward).
 *
 *   gather:     out[i, c] = src[idx[i], c]            src (R, D), idx (N), out (N, D)
 *   scatterAdd: out[r, c] = Σ_{i : idx[i] = r} src[i, c]   src (N, D), idx (N), out (R, D)
 *
 * Out-of-range indices (idx[i] ≥ R) cannot be checked on the host without a
 * read-back, so the kernels define them: gather writes a zero row, and
 * scatterAdd skips the entry. The two are each other's exact gradient under
 * that rule (a zero row does not depend on src).
 *
 * WGSL has no float atomics, and atomics would make the sum order vary, so
 * scatterAdd gives each thread one output row and a block of `cb` columns,
 * zeroes it, then scans all N indices in order and adds the matching source
 * rows: the sum order is i ascending, the same on every run. Cost: every
 * thread reads all N indices, O(R·N·⌈D/cb⌉) index reads plus O(N·D) adds in
 * total, fine for R, N of a few thousand (byte vocab 256, B·T ≤ 4096).
 * Adjacent threads take adjacent rows of the same column block, so a SIMD
 * group of lanes reads the same idx[i] at each step.
 *
 * Bindings: src, idx (read-only), out. Launch:
 *   gather.rows   one thread per output element (N·D), 256 per group
 *   gather.scatter_add  one thread per (row, column block), R·⌈D/cb⌉ threads, 64 per group
 * Both use the 2-D grid of grid1d past 65535 groups.
 */
import { defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { ceilDiv, Params } from "../util.ts";
import { bindings, flatEntry } from "../wgsl.ts";

/** Columns per scatter-add thread: longer blocks mean fewer index scans. */
export const SCATTER_COLUMN_BLOCK = 32;

/** WGSL of gather.rows. */
export const GATHER_WGSL = /* wgsl */ `
${bindings`
  params n: u32, D: u32, R: u32
  read   src: array<f32>, idx: array<u32>
  write  out: array<f32>
`}

${flatEntry(256)}
  let r = idx[i / p.D];
  var v = 0.0;
  if (r < p.R) { v = src[r * p.D + i % p.D]; }
  out[i] = v;
}
`;

/** WGSL of gather.scatter_add. */
export const SCATTER_ADD_WGSL = /* wgsl */ `
${bindings`
  params threads: u32, N: u32, D: u32, R: u32, cb: u32
  read   src: array<f32>, idx: array<u32>
  write  out: array<f32>
`}

${flatEntry(64, { id: "k", bound: "p.threads" })}
  let r = k % p.R;
  let c0 = (k / p.R) * p.cb;
  let c1 = min(p.D, c0 + p.cb);
  let o = r * p.D;
  for (var c = c0; c < c1; c++) { out[o + c] = 0.0; }
  for (var i = 0u; i < p.N; i++) {
    if (idx[i] == r) {
      let s = i * p.D;
      for (var c = c0; c < c1; c++) { out[o + c] += src[s + c]; }
    }
  }
}
`;

const GATHER = defineKernel("gather.rows", () => GATHER_WGSL);
const SCATTER_ADD = defineKernel("gather.scatter_add", () => SCATTER_ADD_WGSL);

/** The inputs of a gather or scatter-add: source rows and a u32 index per row. */
export interface RowsByIndex {
  /** (R, D) for gather, (N, D) for scatter-add, f32. */
  src: GPUBuffer;
  /** (N) u32 row indices. */
  idx: GPUBuffer;
}

/** Sizes of a gather or scatter-add: N indices into R rows of D columns. */
export interface RowIndexSizes {
  /** Indices. */
  N: number;
  /** Rows of the indexed matrix. */
  R: number;
  /** Columns. */
  D: number;
}

/** out (N, D) = rows idx of src (R, D); out-of-range indices give zero rows. */
export function gatherKernel(g: Gpu, out: GPUBuffer, rows: RowsByIndex, sz: RowIndexSizes): void {
  const { src, idx } = rows;
  const { N, R, D } = sz;
  const n = N * D;
  if (n === 0) return;
  g.recorder.dispatchFlat(n, 256, {
    kernel: GATHER,
    buffers: [src, idx, out],
    params: new Params().u32(n).u32(D).u32(R),
  });
}

/** out (R, D) = Σ of src (N, D) rows into rows idx; out-of-range indices are skipped. */
export function scatterAddKernel(
  g: Gpu,
  out: GPUBuffer,
  rows: RowsByIndex,
  sz: RowIndexSizes,
): void {
  const { src, idx } = rows;
  const { N, R, D } = sz;
  if (R * D === 0) return;
  const cb = Math.min(D, SCATTER_COLUMN_BLOCK);
  const threads = R * ceilDiv(D, cb);
  g.recorder.dispatchFlat(threads, 64, {
    kernel: SCATTER_ADD,
    buffers: [src, idx, out],
    params: new Params().u32(threads).u32(N).u32(D).u32(R).u32(cb),
  });
}
