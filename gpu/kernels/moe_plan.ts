/**
 * The MoE FFN's routing plan: a parallel counting sort of the router's
 * selections by expert (the layout is `moe.ts`'s), deterministic and
 * without atomics. Three dispatches, 64 threads per workgroup:
 *
 *   plan_count    sel | chunkCounts         one thread per (chunk of
 *                 MOE_PLAN_CHUNK selections, expert): its count there
 *   plan_offsets  | chunkCounts, counts, offsets, rows      one workgroup:
 *                 per expert the exclusive prefix over chunks (in place)
 *                 and the total; thread 0 the padded offsets (two storage
 *                 barriers); MOE_EMPTY_ROW in every padding row
 *   plan_place    sel, chunkStart, offsets | rows, pos      per (chunk,
 *                 expert): the chunk's selections of the expert, in order
 *
 * Cost: each selection id is read 2·E times (E threads look at each
 * chunk), 2·E·N·k reads in all, spread over ⌈N·k/256⌉·E threads.
 */
import { defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { ceilDiv, flatGrid, Params } from "../util.ts";
import { bindings, flatEntry } from "../wgsl.ts";
import { MOE_EMPTY_ROW, MOE_ROW_TILE, MOE_WG, type MoePlanBuffers } from "./moe.ts";

/** Selections per chunk of the plan's parallel counting sort. */
export const MOE_PLAN_CHUNK = 256;

// Opens main of the per-(chunk, expert) passes: invocation id looks at
// selections [i0, i1) for expert e.
const CHUNK_ENTRY = /* wgsl */ `${flatEntry(MOE_WG, { id: "id", bound: "p.threads" })}
  let e = id % p.E;
  let i0 = (id / p.E) * p.chunk;
  let i1 = min(i0 + p.chunk, p.nk);`;

/** WGSL of moe.plan_count: per (chunk, expert), the chunk's selections of the expert. */
export const MOE_PLAN_COUNT_WGSL = /* wgsl */ `
${bindings`
  params threads: u32, nk: u32, E: u32, chunk: u32
  read   sel: array<u32>
  write  chunkCounts: array<u32>
`}

${CHUNK_ENTRY}
  var c = 0u;
  for (var i = i0; i < i1; i++) { c += select(0u, 1u, sel[i] == e); }
  chunkCounts[id] = c;
}
`;

/**
 * WGSL of moe.plan_offsets (one workgroup): per expert, the exclusive prefix
 * of its chunk counts (in place) and its total; the padded segment starts;
 * EMPTY in every padding row.
 */
export const MOE_PLAN_OFFSETS_WGSL = /* wgsl */ `
const TM = ${MOE_ROW_TILE}u;
const EMPTY = ${MOE_EMPTY_ROW}u;
${bindings`
  params chunks: u32, E: u32, pmax: u32
  write  chunkCounts: array<u32>, counts: array<u32>, offsets: array<u32>, rows: array<u32>
`}

@compute @workgroup_size(${MOE_WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  for (var e = lid; e < p.E; e += ${MOE_WG}u) {
    var run = 0u;
    for (var c = 0u; c < p.chunks; c++) {
      let v = chunkCounts[c * p.E + e];
      chunkCounts[c * p.E + e] = run;
      run += v;
    }
    counts[e] = run;
  }
  storageBarrier();
  if (lid == 0u) {
    var o = 0u;
    for (var e = 0u; e < p.E; e++) {
      offsets[e] = o;
      o += (counts[e] + TM - 1u) / TM * TM;
    }
    offsets[p.E] = o;
  }
  storageBarrier();
  for (var e = lid; e < p.E; e += ${MOE_WG}u) {
    for (var r = offsets[e] + counts[e]; r < offsets[e + 1u]; r++) { rows[r] = EMPTY; }
  }
  for (var r = offsets[p.E] + lid; r < p.pmax; r += ${MOE_WG}u) { rows[r] = EMPTY; }
}
`;

/** WGSL of moe.plan_place: per (chunk, expert), write the chunk's selections of the expert in order. */
export const MOE_PLAN_PLACE_WGSL = /* wgsl */ `
${bindings`
  params threads: u32, nk: u32, E: u32, chunk: u32
  read   sel: array<u32>, chunkStart: array<u32>, offsets: array<u32>
  write  rows: array<u32>, pos: array<u32>
`}

${CHUNK_ENTRY}
  var r = offsets[e] + chunkStart[id];
  for (var i = i0; i < i1; i++) {
    if (sel[i] == e) {
      rows[r] = i;
      pos[i] = r;
      r++;
    }
  }
}
`;

const PLAN_COUNT = defineKernel("moe.plan_count", () => MOE_PLAN_COUNT_WGSL);
const PLAN_OFFSETS = defineKernel("moe.plan_offsets", () => MOE_PLAN_OFFSETS_WGSL);
const PLAN_PLACE = defineKernel("moe.plan_place", () => MOE_PLAN_PLACE_WGSL);

/** Sizes of a plan: N·k selections of E experts into pmax grouped rows. */
export interface MoePlanSizes {
  /** Selections (N·k). */
  nk: number;
  /** Experts. */
  E: number;
  /** Grouped rows (`moeMaxRows`). */
  pmax: number;
}

/**
 * Records the routing plan of `sel` (N·k expert ids < E): counts (E),
 * padded offsets (E + 1), rows (pmax) and pos (N·k), all u32. A pool
 * temporary holds the (chunk, expert) counts.
 */
export function moePlanKernel(
  g: Gpu,
  plan: MoePlanBuffers,
  sel: GPUBuffer,
  { nk, E, pmax }: MoePlanSizes,
): void {
  const chunks = Math.max(1, ceilDiv(nk, MOE_PLAN_CHUNK));
  const threads = chunks * E;
  const workgroups = flatGrid(threads, MOE_WG);
  const params = () => new Params().u32(threads).u32(nk).u32(E).u32(MOE_PLAN_CHUNK);
  const chunkCounts = g.pool.acquire(threads * 4, "moe.chunk_counts");
  g.recorder.dispatch({
    kernel: PLAN_COUNT,
    buffers: [sel, chunkCounts],
    params: params(),
    workgroups,
  });
  g.recorder.dispatch({
    kernel: PLAN_OFFSETS,
    buffers: [chunkCounts, plan.counts, plan.offsets, plan.rows],
    params: new Params().u32(chunks).u32(E).u32(pmax),
    workgroups: [1],
  });
  g.recorder.dispatch({
    kernel: PLAN_PLACE,
    buffers: [sel, chunkCounts, plan.offsets, plan.rows, plan.pos],
    params: params(),
    workgroups,
  });
  g.pool.release(chunkCounts);
}
