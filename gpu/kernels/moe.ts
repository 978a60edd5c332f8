/**
 * MoE FFN kernels (SPEC 4's MoE view): group the router's selections by
 * expert, run every expert's slice of the FFN on just its tokens, combine.
 *
 * Sizes: N tokens, C = d_model, d_ff = E·s (expert e owns neurons
 * [e·s, (e+1)·s): rows of c_fc.weight [d_ff, C], columns of
 * c_proj.weight [C, d_ff]), k experts per token; sel (N, k) u32 holds the
 * router's top-k expert ids, slot j of token t at selection id i = t·k + j.
 * C4 = ⌈C/4⌉, sp4 = ⌈s/4⌉, sp = 4·sp4 (s rounded up to whole vec4s).
 *
 * The plan (a counting sort by expert id; deterministic, no atomics):
 *   counts  (E)     u32  selections of expert e
 *   offsets (E + 1) u32  segment starts, each segment padded to a multiple
 *                        of MOE_ROW_TILE rows; offsets[E] = rows in use
 *   rows    (pmax)  u32  grouped row p holds selection rows[p] (expert e's
 *                        in ascending i, i.e. by token), or MOE_EMPTY_ROW
 *   pos     (N·k)   u32  the inverse: selection i sits at grouped row pos[i]
 * pmax = N·k + E·(MOE_ROW_TILE − 1) rounded up to a tile bounds the padded
 * total, so every launch is sized on the host with no read-back.
 *
 * Kernels, in order (one dispatch each; 64 threads per workgroup, grid1d
 * past 65535 groups; bindings: inputs | outputs, params in group 1):
 *   plan_count    sel | chunkCounts         one thread per (chunk of
 *                 MOE_PLAN_CHUNK selections, expert): its count there
 *   plan_offsets  | chunkCounts, counts, offsets, rows      one workgroup:
 *                 per expert the exclusive prefix over chunks (in place)
 *                 and the total; thread 0 the padded offsets (two storage
 *                 barriers); MOE_EMPTY_ROW in every padding row
 *   plan_place    sel, chunkStart, offsets | rows, pos      per (chunk,
 *                 expert): the chunk's selections of the expert, in order
 *     Cost: each selection id is read 2·E times (E threads look at each
 *     chunk), 2·E·N·k reads in all, spread over ⌈N·k/256⌉·E threads; about
 *     0.4 ms at N·k = 2048 and 1.5 ms at 16384 on llvmpipe (E = 16).
 *   pack_w        w | W1ᵀ (MODE 0) or W2ᵀ (MODE 1), one thread per texel:
 *                 W1ᵀ texel (e·sp4 + t, c) = c_fc.weight[e·s + 4t + q, c],
 *                 q = 0..3, zero past s and for c ≥ C (⌈C/4⌉·4 rows);
 *                 W2ᵀ texel (t, e·sp + j) = c_proj.weight[4t + q, e·s + j]
 *   up            x, rows, W1ᵀ, b1, counts, offsets | act
 *                 act[p] = act(x[token of rows[p]] · W1[e]ᵀ + b1[e]) for
 *                 the expert e whose segment holds row p; padding rows and
 *                 columns ≥ s are stored as zeros (so Y's padding rows are
 *                 zero too). Threads: (pmax/8)·⌈sp4/4⌉.
 *   down          act, W2ᵀ, offsets | Y     Y[p] = act[p] · W2[:, e]ᵀ.
 *                 Threads: (pmax/8)·⌈C4/4⌉.
 *   combine       Y, pos, b2 | out          out[t] = b2 + Σ_{j<k} Y[pos[t·k
 *                 + j]], j ascending: each token's sum in a fixed order,
 *                 no scatter. One thread per (token, 4 texels).
 * Biases are a dummy buffer when HAS_BIAS is false.
 *
 * Grouped matmuls (up, down): one dispatch per stage for all experts
 * ("per expert family, not per expert"). Each invocation owns a
 * MOE_ROW_TILE × 16 tile (8 rows × 4 vec4 accumulators, as
 * `matmul_register.ts`: no workgroup memory, K walked 4 at a time) of one
 * expert: segments are padded to whole row tiles so a tile never spans two
 * experts, and the invocation finds its expert by a binary search of
 * offsets (returning at once past offsets[E]). Invocation id = rowTile ·
 * colTiles + colTile.
 *
 * Operands W1ᵀ, W2ᵀ, act and Y live in one of three designs:
 * - "texture": rgba32float storage textures (read-only where read: on
 *   llvmpipe a texel load costs ~0.9 ns against ~3 ns for a storage-buffer
 *   vec4, see `matmul.ts`). act and Y fold 2^sh logical rows into one
 *   texture row (logical row r, texel t at x = (r & (2^sh − 1))·w + t,
 *   y = r >> sh) to stay within maxTextureDimension2D. Kept per size class
 *   as scratch for reuse (`releaseMoeScratch`).
 * - "buffer": the same texels in vec4 storage buffers, row-major (sh = 0),
 *   for adapters without read-only storage textures or sizes past the
 *   texture limit. Pool temporaries.
 * - "hybrid" (the training step's): W1ᵀ, W2ᵀ in textures, act and Y in
 *   buffers, which the training op keeps for its backward.
 * x (the FFN input) is read straight from its buffer through `rows` by the
 * up kernel: a gather pass into a texture cost more (~20 ns per texel
 * written on llvmpipe) than the slower loads it saved.
 *
 * FLOPs: the useful work is 4·N·k·s·C (up and down; the dense FFN's is
 * 4·N·d_ff·C, so the ratio is k/E). The kernels also run the padding, at
 * most E·(MOE_ROW_TILE − 1) rows and sp − s columns per expert, read the
 * weights once more to pack them (2·d_ff·C) and read N·k·C values to
 * combine.
 *
 * Measured (llvmpipe, 2 cores shared with other jobs, so two runs of
 * `tests/bench/moe_bench.ts` differ: ranges; C 128, d_ff 512, E 16,
 * texture design, ms per call): N = 512 tokens, dense 16-19, this path
 * 7.0-7.9 / 8.9-12 / 15-19 at k = 4 / 8 / 16 (2.3-2.4×, 1.6-1.8×, 1.0×
 * faster); N = 4096, dense 73-81, this path 31-35 / 50-62 / 77-111
 * (2.1-2.6×, 1.2-1.6×, 0.65-1.05×). GPU time at N = 512, k = 4: up 2.1,
 * down 1.8, weight packs 1.0, router 0.8, plan 0.4, combine 0.4, top-k
 * 0.2 ms.
 */
import { dummyBuffer, releaseScratch, scratchTexture } from "../scratch.ts";
import { GpuError } from "../errors.ts";
import type { Kernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { ceilDiv, grid1d, Params } from "../util.ts";

/** Rows per register tile of the grouped matmuls; expert segments are padded to it. */
export const MOE_ROW_TILE = 8;

/** `rows` entry of a padding row. */
export const MOE_EMPTY_ROW = 0xffffffff;

/** Threads per workgroup of every MoE kernel. */
export const MOE_WG = 64;

/**
 * Where the grouped operands live: storage textures, vec4 storage buffers,
 * or "hybrid": the packed weights in textures, act and Y in buffers (the
 * training step keeps act and Y for its backward, so they cannot live in
 * scratch textures, but the weights, read by every row tile, can).
 */
export type MoeDesign = "texture" | "buffer" | "hybrid";

/** Storage of one operand. */
type Store = "texture" | "buffer";

/** Where a design keeps the packed weights W1ᵀ, W2ᵀ (the B operands). */
export function weightStore(d: MoeDesign): Store {
  return d === "buffer" ? "buffer" : "texture";
}

/** Where a design keeps the grouped rows act and Y. */
export function operandStore(d: MoeDesign): Store {
  return d === "texture" ? "texture" : "buffer";
}

/** Activation codes of the `ACT` override (as `activation.ts`). */
export const MOE_ACTIVATION = { relu: 0, gelu: 1 } as const;

/**
 * `ACT` code of no activation: the up kernel stores pre-activations (the
 * training path keeps them for the backward; see `core/nn/moe_ffn_train.ts`).
 */
export const MOE_ACT_IDENTITY = 2;

/** Sizes of one MoE FFN call. */
export interface MoeSizes {
  /** Tokens. */
  N: number;
  /** Model width. */
  C: number;
  /** FFN width (E·s). */
  dff: number;
  /** Experts. */
  E: number;
  /** Experts per token. */
  k: number;
}

/** Rows of the grouped layout the launches are sized for: N·k + E·(tile − 1), tile-rounded. */
export function moeMaxRows(N: number, E: number, k: number): number {
  return ceilDiv(N * k + E * (MOE_ROW_TILE - 1), MOE_ROW_TILE) * MOE_ROW_TILE;
}

// ---- plan ------------------------------------------------------------------

/** Selections per chunk of the plan's parallel counting sort. */
export const MOE_PLAN_CHUNK = 256;

/** WGSL of moe.plan_count: per (chunk, expert), the chunk's selections of the expert. */
export const MOE_PLAN_COUNT_WGSL = /* wgsl */ `
struct P { threads: u32, nk: u32, E: u32, chunk: u32, nx: u32 }
@group(0) @binding(0) var<storage, read> sel: array<u32>;
@group(0) @binding(1) var<storage, read_write> chunkCounts: array<u32>;
@group(1) @binding(0) var<uniform> p: P;

@compute @workgroup_size(${MOE_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let id = gid.y * p.nx * ${MOE_WG}u + gid.x;
  if (id >= p.threads) { return; }
  let e = id % p.E;
  let i0 = (id / p.E) * p.chunk;
  let i1 = min(i0 + p.chunk, p.nk);
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
struct P { chunks: u32, E: u32, pmax: u32 }
@group(0) @binding(0) var<storage, read_write> chunkCounts: array<u32>;
@group(0) @binding(1) var<storage, read_write> counts: array<u32>;
@group(0) @binding(2) var<storage, read_write> offsets: array<u32>;
@group(0) @binding(3) var<storage, read_write> rows: array<u32>;
@group(1) @binding(0) var<uniform> p: P;

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
struct P { threads: u32, nk: u32, E: u32, chunk: u32, nx: u32 }
@group(0) @binding(0) var<storage, read> sel: array<u32>;
@group(0) @binding(1) var<storage, read> chunkStart: array<u32>;
@group(0) @binding(2) var<storage, read> offsets: array<u32>;
@group(0) @binding(3) var<storage, read_write> rows: array<u32>;
@group(0) @binding(4) var<storage, read_write> pos: array<u32>;
@group(1) @binding(0) var<uniform> p: P;

@compute @workgroup_size(${MOE_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let id = gid.y * p.nx * ${MOE_WG}u + gid.x;
  if (id >= p.threads) { return; }
  let e = id % p.E;
  let i0 = (id / p.E) * p.chunk;
  let i1 = min(i0 + p.chunk, p.nk);
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

const PLAN_COUNT: Kernel = { name: "moe.plan_count", code: MOE_PLAN_COUNT_WGSL };
const PLAN_OFFSETS: Kernel = { name: "moe.plan_offsets", code: MOE_PLAN_OFFSETS_WGSL };
const PLAN_PLACE: Kernel = { name: "moe.plan_place", code: MOE_PLAN_PLACE_WGSL };

/**
 * Records the routing plan of `sel` (N·k expert ids < E): counts (E),
 * padded offsets (E + 1), rows (pmax) and pos (N·k), all u32. Three
 * dispatches; a pool temporary holds the (chunk, expert) counts.
 */
export function moePlanKernel(
  g: Gpu,
  counts: GPUBuffer,
  offsets: GPUBuffer,
  rows: GPUBuffer,
  pos: GPUBuffer,
  sel: GPUBuffer,
  nk: number,
  E: number,
  pmax: number,
): void {
  const chunks = Math.max(1, ceilDiv(nk, MOE_PLAN_CHUNK));
  const threads = chunks * E;
  const [nx, ny] = grid1d(ceilDiv(threads, MOE_WG));
  const params = () => new Params().u32(threads).u32(nk).u32(E).u32(MOE_PLAN_CHUNK).u32(nx);
  const chunkCounts = g.pool.acquire(threads * 4, "moe.chunk_counts");
  g.recorder.dispatch({
    kernel: PLAN_COUNT,
    buffers: [sel, chunkCounts],
    params: params(),
    workgroups: [nx, ny],
  });
  g.recorder.dispatch({
    kernel: PLAN_OFFSETS,
    buffers: [chunkCounts, counts, offsets, rows],
    params: new Params().u32(chunks).u32(E).u32(pmax),
    workgroups: [1],
  });
  g.recorder.dispatch({
    kernel: PLAN_PLACE,
    buffers: [sel, chunkCounts, offsets, rows, pos],
    params: params(),
    workgroups: [nx, ny],
  });
  g.pool.release(chunkCounts);
}

// ---- operand access, per design ----------------------------------------------

// A folded texel matrix: logical row r, texel t sits at ((r & mask)·w + t, r >> sh).
// The buffer design uses the same params with sh = 0 (plain row-major).
function readOperand(design: Store, binding: number, v: string, fn: string, f: string): string {
  const decl = design === "texture"
    ? `var ${v}: texture_storage_2d<rgba32float, read>;`
    : `var<storage, read> ${v}: array<vec4f>;`;
  const body = design === "texture"
    ? `return textureLoad(${v}, vec2u(c.x + t, c.y));`
    : `return ${v}[c.y * p.${f}Width + c.x + t];`;
  return /* wgsl */ `
@group(0) @binding(${binding}) ${decl}
fn ${fn}Row(r: u32) -> vec2u { return vec2u((r & p.${f}Mask) * p.${f}W, r >> p.${f}Sh); }
fn ${fn}(c: vec2u, t: u32) -> vec4f { ${body} }`;
}

function writeOperand(
  design: Store,
  binding: number,
  v: string,
  fn: string,
  f: string,
): string {
  const decl = design === "texture"
    ? `var ${v}: texture_storage_2d<rgba32float, write>;`
    : `var<storage, read_write> ${v}: array<vec4f>;`;
  const body = design === "texture"
    ? `textureStore(${v}, vec2u(c.x + t, c.y), val);`
    : `${v}[c.y * p.${f}Width + c.x + t] = val;`;
  return /* wgsl */ `
@group(0) @binding(${binding}) ${decl}
fn ${fn}Row(r: u32) -> vec2u { return vec2u((r & p.${f}Mask) * p.${f}W, r >> p.${f}Sh); }
fn ${fn}(c: vec2u, t: u32, val: vec4f) { ${body} }`;
}

/** Params fields of a folded operand `f`: texels per row, fold shift and mask, width. */
function foldFields(f: string): string {
  return `${f}W: u32, ${f}Sh: u32, ${f}Mask: u32, ${f}Width: u32`;
}

/** Geometry of a folded texel matrix (logical rows × w texels). */
export interface Fold {
  /** Texels per logical row. */
  w: number;
  /** log2 of the logical rows per texture row (0 in the buffer design). */
  sh: number;
  /** Texture (or buffer) width in texels. */
  width: number;
  /** Texture (or buffer) height in texel rows. */
  height: number;
}

function pushFold(p: Params, f: Fold): Params {
  return p.u32(f.w).u32(f.sh).u32((1 << f.sh) - 1).u32(f.width);
}

/**
 * The fold of `rows` × `w` texels: as many rows per texture row as fit
 * (a power of two), or plain row-major in the buffer design. Null when it
 * cannot fit a `limit`-sized texture.
 */
export function foldFor(design: MoeDesign, rows: number, w: number, limit: number): Fold | null {
  if (operandStore(design) === "buffer") return { w, sh: 0, width: w, height: rows };
  if (w > limit) return null;
  const sh = Math.floor(Math.log2(Math.floor(limit / w)));
  const height = Math.max(1, ceilDiv(rows, 2 ** sh));
  if (height > limit) return null;
  return { w, sh, width: w * 2 ** sh, height };
}

const kernels = new Map<string, Kernel>();

function kernel(name: string, make: () => string): Kernel {
  let k = kernels.get(name);
  if (!k) kernels.set(name, k = { name, code: make() });
  return k;
}

// ---- pack weights --------------------------------------------------------------

function packWgsl(design: MoeDesign): string {
  return /* wgsl */ `
override MODE: u32 = 0u;
struct P { n: u32, width: u32, C: u32, dff: u32, s: u32, sp4: u32, nx: u32,
  ${foldFields("d")} }
@group(0) @binding(0) var<storage, read> w: array<f32>;
${writeOperand(weightStore(design), 1, "dst", "stW", "d")}
@group(1) @binding(0) var<uniform> p: P;

@compute @workgroup_size(${MOE_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.nx * ${MOE_WG}u + gid.x;
  if (i >= p.n) { return; }
  let x = i % p.width;
  let y = i / p.width;
  var v = vec4f(0.0);
  if (MODE == 0u) {
    // c_fc.weight [d_ff, C]: texel (e·sp4 + t, c) = rows e·s + 4t + q, column c.
    let e = x / p.sp4;
    let n0 = (x % p.sp4) * 4u;
    for (var q = 0u; q < 4u; q++) {
      if (n0 + q < p.s && y < p.C) { v[q] = w[(e * p.s + n0 + q) * p.C + y]; }
    }
  } else {
    // c_proj.weight [C, d_ff]: texel (t, e·sp + j) = rows 4t + q, column e·s + j.
    let sp = p.sp4 * 4u;
    let e = y / sp;
    let j = y % sp;
    for (var q = 0u; q < 4u; q++) {
      let c = x * 4u + q;
      if (j < p.s && c < p.C) { v[q] = w[c * p.dff + e * p.s + j]; }
    }
  }
  stW(stWRow(y), x, v);
}
`;
}

/**
 * Records the packed transposed weights: `mode` "fc" gives W1ᵀ texels
 * (E·sp4 wide, ⌈C/4⌉·4 high) from c_fc.weight; "proj" gives W2ᵀ texels
 * (C4 wide, E·sp high) from c_proj.weight.
 */
export function moePackWeightsKernel(
  g: Gpu,
  design: MoeDesign,
  dst: GPUBuffer | GPUTextureView,
  w: GPUBuffer,
  mode: "fc" | "proj",
  sz: MoeSizes,
  fold: Fold,
): void {
  const s = sz.dff / sz.E;
  const n = fold.width * fold.height;
  const [nx, ny] = grid1d(ceilDiv(n, MOE_WG));
  g.recorder.dispatch({
    kernel: kernel(`moe.pack_w_${weightStore(design)}`, () => packWgsl(design)),
    constants: { MODE: mode === "fc" ? 0 : 1 },
    buffers: [w, dst],
    params: pushFold(
      new Params().u32(n).u32(fold.width).u32(sz.C).u32(sz.dff).u32(s).u32(ceilDiv(s, 4)).u32(nx),
      fold,
    ),
    workgroups: [nx, ny],
  });
}

// ---- grouped matmuls -------------------------------------------------------------

const EXPERT_OF = /* wgsl */ `
// The expert whose padded segment holds row (largest e < E with offsets[e] <= row).
fn expertOf(row: u32) -> u32 {
  var lo = 0u;
  var hi = p.E;
  loop {
    if (hi - lo <= 1u) { break; }
    let mid = (lo + hi) / 2u;
    if (offsets[mid] <= row) { lo = mid; } else { hi = mid; }
  }
  return lo;
}`;

/** The register-tile main loop shared by up and down: acc += A rows · B texels. */
function tileLoop(tn4: number, bx: string, by: string): string {
  let loadB = "";
  let fma = "";
  for (let j = 0; j < tn4; j++) {
    loadB += `let bn${j} = ldB(vec2u(${bx} + ${j}u, ${by}), 0u);\n`;
    fma += `acc[i][${j}] = fma(vec4f(xa), bn${j}, acc[i][${j}]);\n`;
  }
  return /* wgsl */ `
  var ac: array<vec2u, TM>;
  for (var i = 0u; i < TM; i++) { ac[i] = ldARow(row + i); }
  var acc: array<array<vec4f, ${tn4}>, TM>;
  for (var k4 = 0u; k4 < p.K4; k4++) {
    var av: array<vec4f, TM>;
    for (var i = 0u; i < TM; i++) { av[i] = ldA(ac[i], k4); }
    for (var kk = 0u; kk < 4u; kk++) {
      let kr = k4 * 4u + kk;
      ${loadB}
      for (var i = 0u; i < TM; i++) {
        let xa = av[i][kk];
        ${fma}
      }
    }
  }`;
}

// B is read at absolute texel coordinates: ldB(vec2u(x, y), 0).
function readB(design: Store, binding: number): string {
  const decl = design === "texture"
    ? `var wb: texture_storage_2d<rgba32float, read>;`
    : `var<storage, read> wb: array<vec4f>;`;
  const body = design === "texture"
    ? `return textureLoad(wb, vec2u(c.x + t, c.y));`
    : `return wb[c.y * p.bWidth + c.x + t];`;
  return /* wgsl */ `
@group(0) @binding(${binding}) ${decl}
fn ldB(c: vec2u, t: u32) -> vec4f { ${body} }`;
}

// Rows of h come straight from x through the plan (padding rows read token 0
// and are masked in the epilogue): a separate gather pass cost more than it
// saved (~20 ns per texel on llvmpipe against ~3 ns per extra vec4 load).
function upInput(vecX: boolean): string {
  const load = vecX ? "return x[c.x + t];" : `var v = vec4f(0.0);
  for (var q = 0u; q < 4u; q++) {
    if (t * 4u + q < p.C) { v[q] = x[c.x + t * 4u + q]; }
  }
  return v;`;
  return /* wgsl */ `
fn ldARow(r: u32) -> vec2u {
  let sel = rows[r];
  return vec2u(select(0u, sel / p.k, sel < p.nk) * p.xStride, 0u);
}
fn ldA(c: vec2u, t: u32) -> vec4f {
  ${load}
}`;
}

function upWgsl(design: MoeDesign, tn4: number, vecX: boolean): string {
  return /* wgsl */ `
override HAS_BIAS: bool = false;
override ACT: u32 = 0u;
const TM = ${MOE_ROW_TILE}u;
const K0 = 0.7978845608028654;
const K1 = 0.044715;
struct P { colTiles: u32, threads: u32, nx: u32, E: u32, K4: u32, s: u32, sp4: u32,
  bWidth: u32, C: u32, k: u32, nk: u32, xStride: u32, ${foldFields("d")} }
@group(0) @binding(0) var<storage, read> x: array<${vecX ? "vec4f" : "f32"}>;
@group(0) @binding(1) var<storage, read> rows: array<u32>;
${readB(weightStore(design), 2)}
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> counts: array<u32>;
@group(0) @binding(5) var<storage, read> offsets: array<u32>;
${writeOperand(operandStore(design), 6, "act", "stAct", "d")}
@group(1) @binding(0) var<uniform> p: P;
${upInput(vecX)}
${EXPERT_OF}

// As activation.ts: tanh's argument is clamped (tanh(10) is 1 in f32).
fn activate(v: vec4f) -> vec4f {
  if (ACT == ${MOE_ACT_IDENTITY}u) { return v; }
  if (ACT == 0u) { return max(v, vec4f(0.0)); }
  return 0.5 * v * (1.0 + tanh(clamp(K0 * v * (1.0 + K1 * v * v), vec4f(-10.0), vec4f(10.0))));
}

@compute @workgroup_size(${MOE_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let gi = (wid.y * p.nx + wid.x) * ${MOE_WG}u + lid;
  if (gi >= p.threads) { return; }
  let row = (gi / p.colTiles) * TM;
  let col4 = (gi % p.colTiles) * ${tn4}u;
  if (row >= offsets[p.E]) { return; }
  let e = expertOf(row);
  ${tileLoop(tn4, "e * p.sp4 + col4", "kr")}
  let valid = counts[e];
  let start = offsets[e];
  for (var j = 0u; j < ${tn4}u; j++) {
    let t = col4 + j;
    if (t >= p.sp4) { break; }
    var b = vec4f(0.0);
    var live = vec4<bool>(false);
    for (var q = 0u; q < 4u; q++) {
      let n = t * 4u + q;
      live[q] = n < p.s;
      if (HAS_BIAS && n < p.s) { b[q] = bias[e * p.s + n]; }
    }
    for (var i = 0u; i < TM; i++) {
      let keep = live & vec4<bool>(row + i - start < valid);
      stAct(stActRow(row + i), t, select(vec4f(0.0), activate(acc[i][j] + b), keep));
    }
  }
}
`;
}

function downWgsl(design: MoeDesign, tn4: number): string {
  return /* wgsl */ `
const TM = ${MOE_ROW_TILE}u;
struct P { colTiles: u32, threads: u32, nx: u32, E: u32, K4: u32, sp: u32, C4: u32,
  bWidth: u32, ${foldFields("a")}, ${foldFields("d")} }
${readOperand(operandStore(design), 0, "act", "ldA", "a")}
${readB(weightStore(design), 1)}
@group(0) @binding(2) var<storage, read> offsets: array<u32>;
${writeOperand(operandStore(design), 3, "y", "stY", "d")}
@group(1) @binding(0) var<uniform> p: P;
${EXPERT_OF}

@compute @workgroup_size(${MOE_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let gi = (wid.y * p.nx + wid.x) * ${MOE_WG}u + lid;
  if (gi >= p.threads) { return; }
  let row = (gi / p.colTiles) * TM;
  let col4 = (gi % p.colTiles) * ${tn4}u;
  if (row >= offsets[p.E]) { return; }
  let e = expertOf(row);
  ${tileLoop(tn4, "col4", "e * p.sp + kr")}
  for (var i = 0u; i < TM; i++) {
    let c = stYRow(row + i);
    for (var j = 0u; j < ${tn4}u; j++) {
      if (col4 + j < p.C4) { stY(c, col4 + j, acc[i][j]); }
    }
  }
}
`;
}

/**
 * Output columns per register tile, in vec4s (16 columns; fewer when the
 * output is narrower). An 8×32 tile spills on llvmpipe: measured 10× slower.
 */
export const MOE_TILE_COLUMNS4 = 4;

function groupedLaunch(pmax: number, n4: number) {
  const tn4 = Math.min(MOE_TILE_COLUMNS4, n4);
  const colTiles = ceilDiv(n4, tn4);
  const threads = (pmax / MOE_ROW_TILE) * colTiles;
  const [nx, ny] = grid1d(ceilDiv(threads, MOE_WG));
  return { tn4, colTiles, threads, nx, workgroups: [nx, ny] as [number, number] };
}

/** Operands and folds of the grouped stages. */
export interface MoeOperands {
  /** Packed W1ᵀ (E·sp4 × ⌈C/4⌉·4 texels). */
  w1: GPUBuffer | GPUTextureView;
  /** Packed W2ᵀ (C4 × E·sp texels). */
  w2: GPUBuffer | GPUTextureView;
  /** Activations (pmax × sp4 texels). */
  act: GPUBuffer | GPUTextureView;
  /** Expert outputs Y (pmax × C4 texels). */
  y: GPUBuffer | GPUTextureView;
  /** Folds of w1, w2, act, y. */
  folds: { w1: Fold; w2: Fold; act: Fold; y: Fold };
}

/**
 * Records act = activation(x[token of row] · W1[e]ᵀ + b1[e]) for every
 * grouped row (one dispatch); x is (N, C) f32. "identity" stores the
 * pre-activation (padding still zero).
 */
export function moeUpKernel(
  g: Gpu,
  design: MoeDesign,
  ops: MoeOperands,
  x: GPUBuffer,
  b1: GPUBuffer | null,
  plan: MoePlanBuffers,
  dummy: GPUBuffer,
  sz: MoeSizes,
  pmax: number,
  activation: keyof typeof MOE_ACTIVATION | "identity",
): void {
  const s = sz.dff / sz.E;
  const sp4 = ceilDiv(s, 4);
  const vecX = sz.C % 4 === 0;
  const l = groupedLaunch(pmax, sp4);
  const params = new Params().u32(l.colTiles).u32(l.threads).u32(l.nx).u32(sz.E)
    .u32(ceilDiv(sz.C, 4)).u32(s).u32(sp4).u32(ops.folds.w1.width).u32(sz.C).u32(sz.k)
    .u32(sz.N * sz.k).u32(vecX ? sz.C / 4 : sz.C);
  pushFold(params, ops.folds.act);
  g.recorder.dispatch({
    kernel: kernel(
      `moe.up_${design}_t${l.tn4}${vecX ? "_vx" : ""}`,
      () => upWgsl(design, l.tn4, vecX),
    ),
    constants: {
      HAS_BIAS: b1 ? 1 : 0,
      ACT: activation === "identity" ? MOE_ACT_IDENTITY : MOE_ACTIVATION[activation],
    },
    buffers: [x, plan.rows, ops.w1, b1 ?? dummy, plan.counts, plan.offsets, ops.act],
    params,
    workgroups: l.workgroups,
  });
}

/** Records Y = act · W2[:, e]ᵀ for every grouped row (one dispatch). */
export function moeDownKernel(
  g: Gpu,
  design: MoeDesign,
  ops: MoeOperands,
  offsets: GPUBuffer,
  sz: MoeSizes,
  pmax: number,
): void {
  const sp4 = ceilDiv(sz.dff / sz.E, 4);
  const C4 = ceilDiv(sz.C, 4);
  const l = groupedLaunch(pmax, C4);
  const params = new Params().u32(l.colTiles).u32(l.threads).u32(l.nx).u32(sz.E).u32(sp4)
    .u32(sp4 * 4).u32(C4).u32(ops.folds.w2.width);
  pushFold(params, ops.folds.act);
  pushFold(params, ops.folds.y);
  g.recorder.dispatch({
    kernel: kernel(`moe.down_${design}_t${l.tn4}`, () => downWgsl(design, l.tn4)),
    buffers: [ops.act, ops.w2, offsets, ops.y],
    params,
    workgroups: l.workgroups,
  });
}

// ---- combine -----------------------------------------------------------------

/** Texels of one output row per combine thread: the k row indices are loaded once per thread. */
export const MOE_COMBINE_TEXELS = 4;

function combineWgsl(design: MoeDesign, vecOut: boolean): string {
  const CB = MOE_COMBINE_TEXELS;
  const initBias = vecOut ? "acc[u] = bias[t];" : `for (var q = 0u; q < 4u; q++) {
        if (t * 4u + q < p.C) { acc[u][q] = bias[t * 4u + q]; }
      }`;
  const store = vecOut ? "out[tok * p.C4 + t] = acc[u];" : `for (var q = 0u; q < 4u; q++) {
      if (t * 4u + q < p.C) { out[tok * p.C + t * 4u + q] = acc[u][q]; }
    }`;
  const elem = vecOut ? "vec4f" : "f32";
  return /* wgsl */ `
override HAS_BIAS: bool = false;
struct P { n: u32, C: u32, C4: u32, k: u32, chunks: u32, nx: u32, ${foldFields("a")} }
${readOperand(operandStore(design), 0, "y", "ldA", "a")}
@group(0) @binding(1) var<storage, read> pos: array<u32>;
@group(0) @binding(2) var<storage, read> bias: array<${elem}>;
@group(0) @binding(3) var<storage, read_write> out: array<${elem}>;
@group(1) @binding(0) var<uniform> p: P;

@compute @workgroup_size(${MOE_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.nx * ${MOE_WG}u + gid.x;
  if (i >= p.n) { return; }
  let tok = i / p.chunks;
  let t0 = (i % p.chunks) * ${CB}u;
  var acc: array<vec4f, ${CB}>;
  if (HAS_BIAS) {
    for (var u = 0u; u < ${CB}u; u++) {
      let t = min(t0 + u, p.C4 - 1u);
      ${initBias}
    }
  }
  for (var j = 0u; j < p.k; j++) {
    let c = ldARow(pos[tok * p.k + j]);
    for (var u = 0u; u < ${CB}u; u++) { acc[u] += ldA(c, min(t0 + u, p.C4 - 1u)); }
  }
  for (var u = 0u; u < ${CB}u; u++) {
    let t = t0 + u;
    if (t >= p.C4) { break; }
    ${store}
  }
}
`;
}

/** Records out (N, C) = b2 + Σ over each token's k selections (slot order) of its Y rows. */
export function moeCombineKernel(
  g: Gpu,
  design: MoeDesign,
  out: GPUBuffer,
  y: GPUBuffer | GPUTextureView,
  pos: GPUBuffer,
  b2: GPUBuffer | null,
  dummy: GPUBuffer,
  sz: MoeSizes,
  yFold: Fold,
): void {
  const C4 = ceilDiv(sz.C, 4);
  const chunks = ceilDiv(C4, MOE_COMBINE_TEXELS);
  const n = sz.N * chunks;
  const vecOut = sz.C % 4 === 0;
  const [nx, ny] = grid1d(ceilDiv(n, MOE_WG));
  g.recorder.dispatch({
    kernel: kernel(
      `moe.combine_${operandStore(design)}${vecOut ? "_v4" : ""}`,
      () => combineWgsl(design, vecOut),
    ),
    constants: { HAS_BIAS: b2 ? 1 : 0 },
    buffers: [y, pos, b2 ?? dummy, out],
    params: pushFold(
      new Params().u32(n).u32(sz.C).u32(C4).u32(sz.k).u32(chunks).u32(nx),
      yFold,
    ),
    workgroups: [nx, ny],
  });
}

// ---- the expert stages together ----------------------------------------------------

/** The folds of every grouped operand, or null where a texture would pass `limit`. */
export function moeFolds(
  design: MoeDesign,
  sz: MoeSizes,
  pmax: number,
  limit: number,
): MoeOperands["folds"] | null {
  const C4 = ceilDiv(sz.C, 4);
  const sp4 = ceilDiv(sz.dff / sz.E, 4);
  const act = foldFor(design, pmax, sp4, limit);
  const y = foldFor(design, pmax, C4, limit);
  const w1 = { w: sz.E * sp4, sh: 0, width: sz.E * sp4, height: C4 * 4 };
  const w2 = { w: C4, sh: 0, width: C4, height: sz.E * sp4 * 4 };
  if (!act || !y) return null;
  if (
    weightStore(design) === "texture" &&
    Math.max(w1.width, w1.height, w2.width, w2.height) > limit
  ) {
    return null;
  }
  return { w1, w2, act, y };
}

/**
 * Destroys the MoE scratch textures (otherwise kept for reuse). Call only
 * when no recorded work still uses them (after a sync).
 */
export function releaseMoeScratch(g: Gpu): void {
  releaseScratch(g, "moe");
}

/** The buffers of a routing plan (see the header), as `moePlanKernel` writes them. */
export interface MoePlanBuffers {
  /** (E) selections per expert. */
  counts: GPUBuffer;
  /** (E + 1) padded segment starts. */
  offsets: GPUBuffer;
  /** (pmax) selection id of each grouped row, MOE_EMPTY_ROW for padding. */
  rows: GPUBuffer;
  /** (N·k) grouped row of each selection. */
  pos: GPUBuffer;
}

/** The FFN weights' buffers (nanoGPT layouts; biases may be null). */
export interface MoeWeightBuffers {
  /** c_fc.weight [d_ff, C]. */
  fcW: GPUBuffer;
  /** c_fc.bias [d_ff] or null. */
  fcB: GPUBuffer | null;
  /** c_proj.weight [C, d_ff]. */
  projW: GPUBuffer;
  /** c_proj.bias [C] or null. */
  projB: GPUBuffer | null;
}

/**
 * The design to use: the requested one (callers ask for "texture" or
 * "hybrid" only where WGSL has read-only storage textures), falling back to
 * "buffer" when a texture would pass the device's maxTextureDimension2D.
 */
export function moeDesign(
  g: Gpu,
  sz: MoeSizes,
  requested: MoeDesign,
): { design: MoeDesign; folds: MoeOperands["folds"] } {
  const pmax = moeMaxRows(sz.N, sz.E, sz.k);
  const limit = g.device.limits.maxTextureDimension2D;
  const tried = requested === "buffer" ? null : moeFolds(requested, sz, pmax, limit);
  const design = tried ? requested : "buffer";
  const folds = tried ?? moeFolds("buffer", sz, pmax, limit)!;
  const maxBytes = g.device.limits.maxStorageBufferBindingSize;
  const inBuffers = {
    w1: weightStore(design),
    w2: weightStore(design),
    act: operandStore(design),
    y: operandStore(design),
  };
  for (const [name, f] of Object.entries(folds)) {
    if (
      inBuffers[name as keyof typeof inBuffers] === "buffer" && f.width * f.height * 16 > maxBytes
    ) {
      throw new GpuError(
        `moeFfn: the ${name} operand (${f.height}x${f.width} vec4) of N ${sz.N}, C ${sz.C}, ` +
          `d_ff ${sz.dff}, E ${sz.E}, k ${sz.k} exceeds the device's storage binding limit ` +
          `of ${maxBytes} bytes: use fewer tokens per call`,
      );
    }
  }
  return { design, folds };
}

/**
 * Records the expert stages (packs, up, down, combine) into `out` (N, C),
 * given a routing plan. Scratch: textures kept for reuse ("texture"), or
 * pool buffers released once recorded ("buffer").
 */
export function moeExpertsKernel(
  g: Gpu,
  requested: MoeDesign,
  out: GPUBuffer,
  x: GPUBuffer,
  plan: MoePlanBuffers,
  w: MoeWeightBuffers,
  sz: MoeSizes,
  activation: keyof typeof MOE_ACTIVATION,
): MoeDesign {
  if (sz.N === 0) return requested;
  const pmax = moeMaxRows(sz.N, sz.E, sz.k);
  const { design, folds } = moeDesign(g, sz, requested);
  const temps: GPUBuffer[] = [];
  const operand = (slot: string, f: Fold): GPUBuffer | GPUTextureView => {
    const store = slot.startsWith("w") ? weightStore(design) : operandStore(design);
    if (store === "texture") return scratchTexture(g, "moe", slot, f.width, f.height);
    const b = g.pool.acquire(f.width * f.height * 16, `moe.${slot}`);
    temps.push(b);
    return b;
  };
  const ops: MoeOperands = {
    w1: operand("w1", folds.w1),
    w2: operand("w2", folds.w2),
    act: operand("act", folds.act),
    y: operand("y", folds.y),
    folds,
  };
  const dummy = dummyBuffer(g);
  moePackWeightsKernel(g, design, ops.w1, w.fcW, "fc", sz, folds.w1);
  moePackWeightsKernel(g, design, ops.w2, w.projW, "proj", sz, folds.w2);
  moeUpKernel(g, design, ops, x, w.fcB, plan, dummy, sz, pmax, activation);
  moeDownKernel(g, design, ops, plan.offsets, sz, pmax);
  moeCombineKernel(g, design, out, ops.y, plan.pos, w.projB, dummy, sz, folds.y);
  for (const b of temps) g.pool.release(b);
  return design;
}
