/**
 * MoE FFN kernels for decode (a few tokens per call): GEMVs over the
 * selected experts' weight slices, read straight from the checkpoint
 * layouts, so the weight traffic falls with k.
 *
 * Sizes: N tokens (1..a few dozen), C = d_model, d_ff = E·s (expert e owns
 * rows [e·s, (e+1)·s) of c_fc.weight [d_ff, C] and the same columns of
 * c_proj.weight [C, d_ff]), k experts per token. C4 = ⌈C/4⌉, sp4 = ⌈s/4⌉;
 * a unit is 4 neurons of one slot: (j, g) for slot j < k, g < sp4.
 *
 *   route  keys[e] = orderKey(h[t] · router[e])            e < E
 *          sel[t, r] = the e of rank r (key desc, index asc), r < k
 *   up     act[t, j, n] = act(h[t] · c_fc.weight[sel[t,j]·s + n] + b1[..])
 *                         n < s, zero for s ≤ n < 4·sp4
 *   down   out[t, c] = b2[c] + Σ_{j<k} Σ_{n<s} act[t, j, n] ·
 *                      c_proj.weight[c, sel[t,j]·s + n]
 * (orderKey as `topk.ts`: u32 keys ordered like the floats, NaN above +∞,
 * so ranks are exact and ties go to the lower expert index.) Unrouted
 * (the dense FFN): slot j is expert j, k = E; callers pass E = k = 1.
 *
 * Both GEMVs walk contiguous runs of the original weights: a c_fc row is
 * contiguous along C, and expert e's slice of c_proj row c is the run
 * [c·d_ff + e·s, c·d_ff + (e+1)·s). So no packed or transposed copy is
 * needed; loads are vec4 when C % 4 = 0 (up) and s % 4 = 0 (down), four
 * bounds-checked scalars otherwise. Unselected experts' weights are never
 * read. Register tiles: a thread computes 4 outputs (4 neurons up, 4
 * columns down) for a tile of TT tokens, so one weight vec4 serves TT
 * tokens and one input vec4 serves 4 outputs. TT = 1 when routed (tokens
 * differ in experts), else up to MOE_DECODE_TOKEN_TILE
 * (`moeDecodeTokenTile`); tokens past N in a tile are computed on the last
 * token and not stored. The k slots are summed in slot order, then the
 * bias: a fixed order, so results are identical run to run.
 *
 * Routing runs inside the up stage: each workgroup routes its own token
 * (threads take experts e ≡ lid mod WG and store their score's key in
 * workgroup memory; after a barrier each expert's rank is counted over all
 * E keys, O(E) per expert, no sort; the top k land in workgroup memory; a
 * second barrier). This costs E·C multiply-adds per workgroup instead of
 * two dispatches (scores, top-k) of ~35 µs each, and no expert id is ever
 * read back.
 *
 * Two strategies (`moeDecodeStrategy` picks one):
 *
 * - "fused", one dispatch: workgroup (p, tile) routes its token, computes
 *   all k·sp4 units of the tile into workgroup memory (wact[u·TT + i]),
 *   barrier, then the down column groups of part p ([p·cpp, (p+1)·cpp),
 *   cpp = ⌈C4/P⌉). P > 1 parts per tile repeat the up stage on other
 *   cores; the default is P = 1. Bindings: h, c_fc.weight, b1,
 *   c_proj.weight, b2 [, router] | out. WG = MOE_DECODE_FUSED_WG.
 * - "two-pass", two dispatches, where the fused kernel's activations do
 *   not fit workgroup memory (big d_ff and token tiles):
 *     up    h, c_fc.weight, b1 [, router] | act, sel     workgroup (x,
 *           tile): units [x·WG, (x+1)·WG); act (N, k·sp4) vec4 and sel
 *           (N, k) u32 (written by workgroup x = 0) are pool temporaries
 *     down  act, c_proj.weight, b2 [, sel] | out         workgroup (x,
 *           tile): column groups [x·WG, (x+1)·WG)
 *   WG = MOE_DECODE_WG (one llvmpipe SIMD row, so N = 1 still spreads
 *   over several workgroups).
 * Biases are a dummy buffer when absent (params hasB1 / hasB2 = 0). Token
 * tiles are the grid's y (⌈N/TT⌉ ≤ 65535).
 *
 * Cost: decode is bound by dispatches and loads. The fused kernel loads
 * 2·E·C/4 vec4s to route and 5·C/4 per unit in each of up and down, so at
 * k = E/4 it loads about a quarter of what dense does; the rest of a call
 * is the per-dispatch floor (`deno task bench:decode` measures both). One
 * workgroup per token leaves cores idle at N = 1, yet splitting the work
 * further measured no faster (a second dispatch, and the routing repeated
 * by each up workgroup).
 *
 * Why not textures (`moe.ts`, `matmul.ts`): a texel loads ~3× faster than
 * a storage vec4 on llvmpipe, but the weights would need a packed copy
 * kept in step with the tensors (AdamW updates parameters in place), and
 * it would shrink dense's time (all loads) more than the sparse path's
 * (where the per-call floor is most of the time).
 */
import { defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { dummyBuffer } from "../scratch.ts";
import { ceilDiv, MAX_WORKGROUPS_PER_DIM, Params } from "../util.ts";
import { MOE_ACTIVATION } from "./moe.ts";

/** Threads per workgroup of the two-pass kernels (one llvmpipe SIMD row). */
export const MOE_DECODE_WG = 8;

/** Threads per workgroup of the fused kernel. */
export const MOE_DECODE_FUSED_WG = 32;

/**
 * Most tokens per tile of the dense kernels (TT·4 vec4 accumulators per
 * thread). Measured at N = 8 on llvmpipe: tiles of 4 ran ~1.5-2× faster
 * than tiles of 1 or 2 and no slower than 8 (whose 32 accumulators spill,
 * and which leave one workgroup for the two cores).
 */
export const MOE_DECODE_TOKEN_TILE = 4;

/** Largest expert count of the routed kernels (workgroup memory holds two words per expert). */
export const MOE_DECODE_MAX_EXPERTS = 1024;

/** Sizes of one decode FFN call. */
export interface MoeDecodeSizes {
  /** Tokens. */
  N: number;
  /** Model width. */
  C: number;
  /** FFN width (E·s). */
  dff: number;
  /** Experts. */
  E: number;
  /** Experts per token (k = E when not routed). */
  k: number;
}

/** How a call runs: one fused dispatch split in `parts` per token, or two passes. */
export type MoeDecodeStrategy = { kind: "fused"; parts: number } | { kind: "two-pass" };

// ---- WGSL pieces ---------------------------------------------------------------

// 4 consecutive elements from element 4·c4 of row r of a row-major matrix
// with `len` columns: one vec4 when rows are vec4-aligned, else 4
// bounds-checked scalars (zero past the row's end).
function rowLoader(fn: string, v: string, len: string, vec: boolean): string {
  if (vec) return `fn ${fn}(r: u32, c4: u32) -> vec4f { return ${v}[r * (${len} / 4u) + c4]; }`;
  return /* wgsl */ `fn ${fn}(r: u32, c4: u32) -> vec4f {
  var out = vec4f(0.0);
  for (var q = 0u; q < 4u; q++) {
    let c = c4 * 4u + q;
    if (c < ${len}) { out[q] = ${v}[r * ${len} + c]; }
  }
  return out;
}`;
}

function hsum(v: string): string {
  return `(${v}.x + ${v}.y + ${v}.z + ${v}.w)`;
}

// Routing of token t into workgroup memory `picked` (see the header).
function routeWgsl(eCap: number, writeSel: boolean): string {
  return /* wgsl */ `
var<workgroup> keys: array<u32, ${eCap}>;
var<workgroup> picked: array<u32, ${eCap}>;

// As topk.ts: u32 keys that order like the floats (−0 folded onto +0).
fn orderKey(v: f32) -> u32 {
  var b = bitcast<u32>(v);
  if (b == 0x80000000u) { b = 0u; }
  if ((b & 0x80000000u) != 0u) { return ~b; }
  return b | 0x80000000u;
}

fn route(t: u32, lid: u32, first: bool) {
  for (var e = lid; e < p.E; e += WG) {
    var acc = vec4f(0.0);
    for (var c4 = 0u; c4 < p.C4; c4++) { acc += ldX(t, c4) * ldR(e, c4); }
    keys[e] = orderKey(${hsum("acc")});
  }
  workgroupBarrier();
  for (var e = lid; e < p.E; e += WG) {
    let ke = keys[e];
    var rank = 0u;
    for (var f = 0u; f < p.E; f++) {
      let kf = keys[f];
      rank += select(0u, 1u, kf > ke || (kf == ke && f < e));
    }
    if (rank < p.k) {
      picked[rank] = e;
      ${writeSel ? "if (first) { sel[t * p.k + rank] = e; }" : ""}
    }
  }
  workgroupBarrier();
}`;
}

// upUnit(t0, e, g): activations of neurons 4g..4g+3 of expert e for tokens
// t0..t0+TT−1 (tokens past N repeat the last one; callers do not store
// them): one weight vec4 serves TT tokens, one input vec4 4 neurons.
const UP_UNIT = /* wgsl */ `
const K0 = 0.7978845608028654;
const K1 = 0.044715;

// As activation.ts: tanh's argument is clamped (tanh(10) is 1 in f32).
fn activate(v: vec4f) -> vec4f {
  if (p.act == 0u) { return max(v, vec4f(0.0)); }
  return 0.5 * v * (1.0 + tanh(clamp(K0 * v * (1.0 + K1 * v * v), vec4f(-10.0), vec4f(10.0))));
}

fn upUnit(t0: u32, e: u32, g: u32) -> array<vec4f, TT> {
  let n0 = g * 4u;
  // Rows past the expert's s neurons repeat its last row; their results are masked.
  let r0 = e * p.s + min(n0, p.s - 1u);
  let r1 = e * p.s + min(n0 + 1u, p.s - 1u);
  let r2 = e * p.s + min(n0 + 2u, p.s - 1u);
  let r3 = e * p.s + min(n0 + 3u, p.s - 1u);
  var a: array<array<vec4f, 4>, TT>;
  for (var c4 = 0u; c4 < p.C4; c4++) {
    let w0 = ldW1(r0, c4);
    let w1 = ldW1(r1, c4);
    let w2 = ldW1(r2, c4);
    let w3 = ldW1(r3, c4);
    for (var i = 0u; i < TT; i++) {
      let xv = ldX(min(t0 + i, p.N - 1u), c4);
      a[i][0] += w0 * xv;
      a[i][1] += w1 * xv;
      a[i][2] += w2 * xv;
      a[i][3] += w3 * xv;
    }
  }
  var b = vec4f(0.0);
  if (p.hasB1 != 0u) { b = vec4f(b1[r0], b1[r1], b1[r2], b1[r3]); }
  let live = vec4u(n0) + vec4u(0u, 1u, 2u, 3u) < vec4u(p.s);
  var out: array<vec4f, TT>;
  for (var i = 0u; i < TT; i++) {
    let v = vec4f(${hsum("a[i][0]")}, ${hsum("a[i][1]")}, ${hsum("a[i][2]")}, ${hsum("a[i][3]")});
    out[i] = select(vec4f(0.0), activate(v + b), live);
  }
  return out;
}`;

// downGroup(t0, g4): out[t0 + i, 4·g4 .. 4·g4 + 3] for i < TT (bias
// included), reading activations through actAt(t0, i, j, g) and slot experts
// through expertOf(t0, j) (TT = 1 when routed: tokens differ in experts).
function downGroupWgsl(vecW: boolean): string {
  const ldW2 = vecW
    ? `fn ldW2(c: u32, e: u32, g: u32) -> vec4f { return w2[(c * p.dff + e * p.s) / 4u + g]; }`
    : /* wgsl */ `fn ldW2(c: u32, e: u32, g: u32) -> vec4f {
  var out = vec4f(0.0);
  for (var q = 0u; q < 4u; q++) {
    let n = g * 4u + q;
    if (n < p.s) { out[q] = w2[c * p.dff + e * p.s + n]; }
  }
  return out;
}`;
  return /* wgsl */ `
// Expert e's slice of c_proj row c: 4 neurons from n = 4·g.
${ldW2}

fn downGroup(t0: u32, g4: u32) -> array<vec4f, TT> {
  let c0 = g4 * 4u;
  // Columns past C repeat the last one; the caller does not store them.
  let c1 = min(c0 + 1u, p.C - 1u);
  let c2 = min(c0 + 2u, p.C - 1u);
  let c3 = min(c0 + 3u, p.C - 1u);
  var a: array<array<vec4f, 4>, TT>;
  for (var j = 0u; j < p.k; j++) {
    let e = expertOf(t0, j);
    for (var g = 0u; g < p.sp4; g++) {
      let w0 = ldW2(c0, e, g);
      let w1 = ldW2(c1, e, g);
      let w2 = ldW2(c2, e, g);
      let w3 = ldW2(c3, e, g);
      for (var i = 0u; i < TT; i++) {
        let av = actAt(t0, i, j, g);
        a[i][0] += w0 * av;
        a[i][1] += w1 * av;
        a[i][2] += w2 * av;
        a[i][3] += w3 * av;
      }
    }
  }
  var b = vec4f(0.0);
  if (p.hasB2 != 0u) { b = vec4f(b2[c0], b2[c1], b2[c2], b2[c3]); }
  var out: array<vec4f, TT>;
  for (var i = 0u; i < TT; i++) {
    out[i] = vec4f(${hsum("a[i][0]")}, ${hsum("a[i][1]")}, ${hsum("a[i][2]")}, ${
    hsum("a[i][3]")
  }) + b;
  }
  return out;
}`;
}

// Stores rows t0..t0+TT−1 (those < N) of column group g4.
function storeOut(vecOut: boolean): string {
  const one = vecOut ? "out[t * p.C4 + g4] = v[i];" : /* wgsl */ `for (var q = 0u; q < 4u; q++) {
      let c = g4 * 4u + q;
      if (c < p.C) { out[t * p.C + c] = v[i][q]; }
    }`;
  return /* wgsl */ `fn storeOut(t0: u32, g4: u32, v: array<vec4f, TT>) {
  for (var i = 0u; i < TT; i++) {
    let t = t0 + i;
    if (t >= p.N) { break; }
    ${one}
  }
}`;
}

// One params struct for every kernel (cpp is used by the fused kernel only).
// Biases and activation are uniform flags rather than override constants:
// each override combination would be one more pipeline for llvmpipe to
// compile (~1 s each with a cold shader cache), for a branch per 4 outputs.
const PARAMS = /* wgsl */ `
struct P { N: u32, C: u32, C4: u32, s: u32, sp4: u32, k: u32, units: u32, dff: u32, cpp: u32,
  E: u32, hasB1: u32, hasB2: u32, act: u32 }`;

function elem(vec: boolean): string {
  return vec ? "vec4f" : "f32";
}

// ---- kernels ---------------------------------------------------------------------

function header(wg: number, tt: number): string {
  return /* wgsl */ `
const WG = ${wg}u;
const TT = ${tt}u;
${PARAMS}`;
}

function fusedWgsl(
  routed: boolean,
  vecX: boolean,
  vecW: boolean,
  eCap: number,
  wactCap: number,
  tt: number,
): string {
  return /* wgsl */ `${header(MOE_DECODE_FUSED_WG, tt)}
@group(0) @binding(0) var<storage, read> x: array<${elem(vecX)}>;
@group(0) @binding(1) var<storage, read> w1: array<${elem(vecX)}>;
@group(0) @binding(2) var<storage, read> b1: array<f32>;
@group(0) @binding(3) var<storage, read> w2: array<${elem(vecW)}>;
@group(0) @binding(4) var<storage, read> b2: array<f32>;
${
    routed
      ? `@group(0) @binding(5) var<storage, read> router: array<${elem(vecX)}>;
@group(0) @binding(6) var<storage, read_write> out: array<${elem(vecX)}>;`
      : `@group(0) @binding(5) var<storage, read_write> out: array<${elem(vecX)}>;`
  }
@group(1) @binding(0) var<uniform> p: P;
// The token tile's activations, unit-major: wact[u·TT + i].
var<workgroup> wact: array<vec4f, ${wactCap}>;
${rowLoader("ldX", "x", "p.C", vecX)}
${rowLoader("ldW1", "w1", "p.C", vecX)}
${routed ? rowLoader("ldR", "router", "p.C", vecX) + routeWgsl(eCap, false) : ""}
${UP_UNIT}
fn expertOf(t0: u32, j: u32) -> u32 { return ${routed ? "picked[j]" : "j"}; }
fn actAt(t0: u32, i: u32, j: u32, g: u32) -> vec4f { return wact[(j * p.sp4 + g) * TT + i]; }
${downGroupWgsl(vecW)}
${storeOut(vecX)}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t0 = wid.y * TT;
  ${routed ? "route(t0, lid, false);" : ""}
  for (var u = lid; u < p.units; u += WG) {
    let v = upUnit(t0, expertOf(t0, u / p.sp4), u % p.sp4);
    for (var i = 0u; i < TT; i++) { wact[u * TT + i] = v[i]; }
  }
  workgroupBarrier();
  let end = min((wid.x + 1u) * p.cpp, p.C4);
  for (var g4 = wid.x * p.cpp + lid; g4 < end; g4 += WG) { storeOut(t0, g4, downGroup(t0, g4)); }
}
`;
}

function upWgsl(routed: boolean, vecX: boolean, eCap: number, tt: number): string {
  return /* wgsl */ `${header(MOE_DECODE_WG, tt)}
@group(0) @binding(0) var<storage, read> x: array<${elem(vecX)}>;
@group(0) @binding(1) var<storage, read> w1: array<${elem(vecX)}>;
@group(0) @binding(2) var<storage, read> b1: array<f32>;
${
    routed
      ? `@group(0) @binding(3) var<storage, read> router: array<${elem(vecX)}>;
@group(0) @binding(4) var<storage, read_write> act: array<vec4f>;
@group(0) @binding(5) var<storage, read_write> sel: array<u32>;`
      : `@group(0) @binding(3) var<storage, read_write> act: array<vec4f>;`
  }
@group(1) @binding(0) var<uniform> p: P;
${rowLoader("ldX", "x", "p.C", vecX)}
${rowLoader("ldW1", "w1", "p.C", vecX)}
${routed ? rowLoader("ldR", "router", "p.C", vecX) + routeWgsl(eCap, true) : ""}
${UP_UNIT}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t0 = wid.y * TT;
  ${routed ? "route(t0, lid, wid.x == 0u);" : ""}
  let u = wid.x * WG + lid;
  if (u >= p.units) { return; }
  let v = upUnit(t0, ${routed ? "picked[u / p.sp4]" : "u / p.sp4"}, u % p.sp4);
  for (var i = 0u; i < TT; i++) {
    if (t0 + i < p.N) { act[(t0 + i) * p.units + u] = v[i]; }
  }
}
`;
}

function downWgsl(routed: boolean, vecW: boolean, vecOut: boolean, tt: number): string {
  return /* wgsl */ `${header(MOE_DECODE_WG, tt)}
@group(0) @binding(0) var<storage, read> act: array<vec4f>;
@group(0) @binding(1) var<storage, read> w2: array<${elem(vecW)}>;
@group(0) @binding(2) var<storage, read> b2: array<f32>;
${
    routed
      ? `@group(0) @binding(3) var<storage, read> sel: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<${elem(vecOut)}>;`
      : `@group(0) @binding(3) var<storage, read_write> out: array<${elem(vecOut)}>;`
  }
@group(1) @binding(0) var<uniform> p: P;
fn expertOf(t0: u32, j: u32) -> u32 { return ${routed ? "sel[t0 * p.k + j]" : "j"}; }
fn actAt(t0: u32, i: u32, j: u32, g: u32) -> vec4f {
  return act[min(t0 + i, p.N - 1u) * p.units + j * p.sp4 + g];
}
${downGroupWgsl(vecW)}
${storeOut(vecOut)}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g4 = wid.x * WG + lid;
  if (g4 >= p.C4) { return; }
  let t0 = wid.y * TT;
  storeOut(t0, g4, downGroup(t0, g4));
}
`;
}

// ---- strategy ------------------------------------------------------------------------

/**
 * Tokens per tile: 1 when routed (each token has its own experts), else up
 * to MOE_DECODE_TOKEN_TILE (a power of two ≤ N), so each weight vec4 is
 * loaded once per tile.
 */
export function moeDecodeTokenTile(N: number, routed: boolean): number {
  if (routed) return 1;
  let tt = 1;
  while (tt * 2 <= Math.min(N, MOE_DECODE_TOKEN_TILE)) tt *= 2;
  return tt;
}

/**
 * The strategy of a call: "fused" in one part wherever its workgroup
 * memory (TT·k·sp4 activation vec4s plus two words per routed expert)
 * fits `wgBytes`, else "two-pass". Measured on llvmpipe (2 cores shared
 * with other jobs, C 128, d_ff 512, E 16; see the header), the fused
 * kernel in one part beat both two parts (which repeat the up stage on the
 * second core) and two passes (one more dispatch, and the routing repeated
 * by each up workgroup) at N = 1 and N = 8, dense and k = 1..16.
 */
export function moeDecodeStrategy(
  sz: MoeDecodeSizes,
  routed: boolean,
  wgBytes: number,
): MoeDecodeStrategy {
  return fusedBytes(sz, routed) <= wgBytes ? { kind: "fused", parts: 1 } : { kind: "two-pass" };
}

// Workgroup arrays are sized by power-of-two classes, so that one pipeline
// serves many shapes (each new one costs a compile).
function sizeClass(n: number, min: number): number {
  let c = min;
  while (c < n) c *= 2;
  return c;
}

/** Workgroup array sizes of the fused kernel: activation vec4s, routing words per array. */
function fusedCaps(sz: MoeDecodeSizes, routed: boolean): { wact: number; e: number } {
  const units = sz.k * ceilDiv(sz.dff / sz.E, 4);
  return {
    wact: sizeClass(units * moeDecodeTokenTile(sz.N, routed), 64),
    e: sizeClass(sz.E, 16),
  };
}

/** Workgroup memory of the fused kernel: activations of a token tile, routing keys. */
function fusedBytes(sz: MoeDecodeSizes, routed: boolean): number {
  const cap = fusedCaps(sz, routed);
  return cap.wact * 16 + (routed ? 8 * cap.e : 0);
}

// ---- launcher ---------------------------------------------------------------------------

/** The FFN buffers of one decode call (nanoGPT layouts; biases and router may be null). */
export interface MoeDecodeWeights {
  /** c_fc.weight [d_ff, C]. */
  fcW: GPUBuffer;
  /** c_fc.bias [d_ff], or null. */
  fcB: GPUBuffer | null;
  /** c_proj.weight [C, d_ff]. */
  projW: GPUBuffer;
  /** c_proj.bias [C], or null. */
  projB: GPUBuffer | null;
  /** router.weight [E, C]; null runs every expert (k must equal E). */
  router: GPUBuffer | null;
}

function checkDecodeSizes(sz: MoeDecodeSizes, routed: boolean): void {
  const { N, C, dff, E, k } = sz;
  const s = dff / E;
  if (!Number.isInteger(s) || s < 1 || k < 1 || k > E || C < 1) {
    throw new RangeError(`moeDecodeKernel: bad sizes ${JSON.stringify(sz)}`);
  }
  if (!routed && k !== E) throw new RangeError(`moeDecodeKernel: k ${k} < E ${E} needs a router`);
  if (routed && E > MOE_DECODE_MAX_EXPERTS) {
    throw new RangeError(`moeDecodeKernel: ${E} experts exceed ${MOE_DECODE_MAX_EXPERTS}`);
  }
  if (N > MAX_WORKGROUPS_PER_DIM) {
    throw new RangeError(`moeDecodeKernel: ${N} tokens exceed ${MAX_WORKGROUPS_PER_DIM}`);
  }
}

/**
 * Records the decode FFN of N tokens: out (N, C) f32 from h (N, C) f32,
 * routing each token to its top k of E experts when `w.router` is given,
 * else running all E experts (k = E: the dense FFN). One dispatch
 * ("fused") or two ("two-pass", with pool temporaries for the activations
 * (N·k·sp4 vec4) and selections (N·k u32)); `strategy` defaults to
 * `moeDecodeStrategy`'s pick. Returns the strategy used.
 */
export function moeDecodeKernel(
  g: Gpu,
  out: GPUBuffer,
  h: GPUBuffer,
  w: MoeDecodeWeights,
  sz: MoeDecodeSizes,
  activation: keyof typeof MOE_ACTIVATION,
  strategy?: MoeDecodeStrategy,
): MoeDecodeStrategy {
  const { N, C, dff, E, k } = sz;
  const s = dff / E;
  const routed = w.router !== null;
  checkDecodeSizes(sz, routed);
  const wgBytes = g.device.limits.maxComputeWorkgroupStorageSize;
  const plan = strategy ?? moeDecodeStrategy(sz, routed, wgBytes);
  if (N === 0) return plan;
  const C4 = ceilDiv(C, 4);
  const sp4 = ceilDiv(s, 4);
  const units = k * sp4;
  const dummy = dummyBuffer(g);
  const vecX = C % 4 === 0;
  const vecW = s % 4 === 0;
  const b1 = w.fcB ?? dummy;
  const b2 = w.projB ?? dummy;
  const tt = moeDecodeTokenTile(N, routed);
  const tiles = ceilDiv(N, tt);
  const caps = fusedCaps(sz, routed);
  const tag = `${routed ? `routed_e${caps.e}` : "dense"}${vecX ? "_x4" : ""}${
    vecW ? "_w4" : ""
  }_t${tt}`;
  const params = (cpp: number) =>
    new Params().u32(N).u32(C).u32(C4).u32(s).u32(sp4).u32(k).u32(units).u32(dff).u32(cpp)
      .u32(E).u32(w.fcB ? 1 : 0).u32(w.projB ? 1 : 0).u32(MOE_ACTIVATION[activation]);

  if (plan.kind === "fused") {
    if (fusedBytes(sz, routed) > wgBytes) {
      throw new RangeError(
        `moeDecodeKernel: ${units}×${tt} activations exceed workgroup memory (${wgBytes} B)`,
      );
    }
    const parts = Math.max(1, Math.min(plan.parts, C4));
    g.recorder.dispatch({
      kernel: defineKernel(
        `moe_decode.fused_${tag}_a${caps.wact}`,
        () => fusedWgsl(routed, vecX, vecW, caps.e, caps.wact, tt),
      ),
      buffers: routed
        ? [h, w.fcW, b1, w.projW, b2, w.router!, out]
        : [h, w.fcW, b1, w.projW, b2, out],
      params: params(ceilDiv(C4, parts)),
      workgroups: [parts, tiles],
    });
    return { kind: "fused", parts };
  }

  const actBuf = g.pool.acquire(N * units * 16, "moe_decode.act");
  const sel = routed ? g.pool.acquire(N * k * 4, "moe_decode.sel") : null;
  g.recorder.dispatch({
    kernel: defineKernel(`moe_decode.up_${tag}`, () => upWgsl(routed, vecX, caps.e, tt)),
    buffers: routed ? [h, w.fcW, b1, w.router!, actBuf, sel!] : [h, w.fcW, b1, actBuf],
    params: params(0),
    workgroups: [ceilDiv(units, MOE_DECODE_WG), tiles],
  });
  g.recorder.dispatch({
    kernel: defineKernel(`moe_decode.down_${tag}`, () => downWgsl(routed, vecW, vecX, tt)),
    buffers: routed ? [actBuf, w.projW, b2, sel!, out] : [actBuf, w.projW, b2, out],
    params: params(0),
    workgroups: [ceilDiv(C4, MOE_DECODE_WG), tiles],
  });
  g.pool.release(actBuf);
  if (sel) g.pool.release(sel);
  return plan;
}
