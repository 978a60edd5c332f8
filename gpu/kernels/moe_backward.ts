/**
 * Kernels of the sparse MoE FFN's training step (`core/nn/moe_ffn_train.ts`)
 * that `moe.ts` lacks. The grouped layout, plan and sizes are `moe.ts`'s
 * (N tokens, C, d_ff = E·s, k, C4 = ⌈C/4⌉, sp4 = ⌈s/4⌉, sp = 4·sp4, pmax
 * grouped rows, expert e's rows [offsets[e], offsets[e] + counts[e]),
 * rows[p] = selection id t·k + j). Grouped operands here are in buffers
 * (the "buffer" and "hybrid" designs): row p of a (pmax × w texels)
 * operand at vec4 p·w; the packed weights go to a buffer or, in the hybrid
 * design, to a storage texture.
 *
 * The forward and backward's row-parallel grouped products reuse moe.ts's
 * up / down kernels with other packed B operands (the pack below):
 *   dAct = dOut[token] · W2[:, e-slice]   up kernel (identity), B = W2ᵀ-up
 *   dXr  = dPre · W1[e-slice]             down kernel,          B = W1-down
 *
 * Kernels (64 threads per workgroup, grid1d past 65535 groups; bindings:
 * inputs | outputs, params in group 1):
 *   pack      w | B      one thread per texel. MODE 0 (up layout, E·sp4
 *             wide, C4·4 high) from c_proj.weight [C, d_ff]: texel
 *             (e·sp4 + t, c) = W2[c, e·s + 4t + q]; MODE 1 (down layout,
 *             C4 wide, E·sp high) from c_fc.weight [d_ff, C]: texel
 *             (t, e·sp + j) = W1[e·s + j, 4t + q]; zero past s and C.
 *   act       pre | act            act = f(pre), one thread per vec4
 *   dact      pre | dAct (in place) dPre = dAct ⊙ f'(pre), one thread per vec4
 *   outer     L, R, rows, counts, offsets | out, dBias
 *             out[e·eS + i·iS + j·jS] = Σ_{p ∈ rows of e} L[p, i]·R[token(p), j]
 *             (i < s, j < C; L grouped sp wide, R (N, C) gathered through
 *             the plan). One thread per (e, 4 i, 8 j) tile, looping over
 *             the expert's rows in order: deterministic, no atomics, and an
 *             expert with no rows writes exact zeros. With HAS_BIAS the
 *             j-tile-0 threads also write dBias[e·s + i] = Σ_p L[p, i].
 *             dW1 = outer(dPre, h) (eS s·C, iS C, jS 1); dW2 = outer(act,
 *             dOut) (eS s, iS 1, jS d_ff: c_proj.weight's columns).
 *   router    dOut, y, pos, sel, scores | dS     one thread per token:
 *             g_j = dOut[t] · y[pos[t·k + j]], p = softmax of the token's
 *             k selected scores, dS[t, sel_j] = p_j (g_j − Σ_i p_i g_i),
 *             zero for unselected experts. dS's row first holds g (so no
 *             per-thread array of k values is needed).
 *
 * Work: outer is N·k·s·C multiply-adds per weight (the selected experts
 * only), router N·k·C, pack 2·d_ff·C reads.
 */
import type { Gpu } from "../runtime.ts";
import { ceilDiv, grid1d, Params } from "../util.ts";
import { MOE_ACTIVATION, MOE_WG } from "./moe.ts";

/** Columns (j) per thread of the outer-product kernel. */
export const MOE_OUTER_TJ = 8;

const ACT_COMMON = /* wgsl */ `
override ACT: u32 = 0u;
const K0 = 0.7978845608028654;
const K1 = 0.044715;
struct P { n: u32, nx: u32 }
// As activation.ts (tanh's argument clamped: tanh(10) is 1 in f32).
fn tanhu(v: vec4f) -> vec4f {
  return tanh(clamp(K0 * v * (1.0 + K1 * v * v), vec4f(-10.0), vec4f(10.0)));
}
fn act(v: vec4f) -> vec4f {
  if (ACT == 0u) { return max(v, vec4f(0.0)); }
  return 0.5 * v * (1.0 + tanhu(v));
}
fn dact(v: vec4f) -> vec4f {
  if (ACT == 0u) { return select(vec4f(0.0), vec4f(1.0), v > vec4f(0.0)); }
  let t = tanhu(v);
  return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * K0 * (1.0 + 3.0 * K1 * v * v);
}
`;

/** WGSL of moe_bw.act: act = f(pre) over vec4s. */
export const MOE_BW_ACT_WGSL = ACT_COMMON + /* wgsl */ `
@group(0) @binding(0) var<storage, read> pre: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4f>;
@group(1) @binding(0) var<uniform> p: P;
@compute @workgroup_size(${MOE_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.nx * ${MOE_WG}u + gid.x;
  if (i < p.n) { out[i] = act(pre[i]); }
}
`;

/** WGSL of moe_bw.dact: g = g ⊙ f'(pre) in place over vec4s. */
export const MOE_BW_DACT_WGSL = ACT_COMMON + /* wgsl */ `
@group(0) @binding(0) var<storage, read> pre: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> g: array<vec4f>;
@group(1) @binding(0) var<uniform> p: P;
@compute @workgroup_size(${MOE_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.nx * ${MOE_WG}u + gid.x;
  if (i < p.n) { g[i] = g[i] * dact(pre[i]); }
}
`;

/**
 * WGSL of moe_bw.pack (see the header for both layouts), into a vec4
 * buffer or, for the "hybrid" design, an rgba32float storage texture.
 */
function bwPackWgsl(texture: boolean): string {
  const decl = texture
    ? "var dst: texture_storage_2d<rgba32float, write>;"
    : "var<storage, read_write> dst: array<vec4f>;";
  const store = texture ? "textureStore(dst, vec2u(x, y), v);" : "dst[i] = v;";
  return /* wgsl */ `
override MODE: u32 = 0u;
struct P { n: u32, width: u32, C: u32, dff: u32, s: u32, sp4: u32, nx: u32 }
@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) ${decl}
@group(1) @binding(0) var<uniform> p: P;

@compute @workgroup_size(${MOE_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.nx * ${MOE_WG}u + gid.x;
  if (i >= p.n) { return; }
  let x = i % p.width;
  let y = i / p.width;
  var v = vec4f(0.0);
  if (MODE == 0u) {
    let e = x / p.sp4;
    let n0 = (x % p.sp4) * 4u;
    for (var q = 0u; q < 4u; q++) {
      if (n0 + q < p.s && y < p.C) { v[q] = w[y * p.dff + e * p.s + n0 + q]; }
    }
  } else {
    let sp = p.sp4 * 4u;
    let e = y / sp;
    let j = y % sp;
    for (var q = 0u; q < 4u; q++) {
      let c = x * 4u + q;
      if (j < p.s && c < p.C) { v[q] = w[(e * p.s + j) * p.C + c]; }
    }
  }
  ${store}
}
`;
}

function outerWgsl(vecR: boolean): string {
  const TJ = MOE_OUTER_TJ;
  const loadR = vecR
    ? `for (var u = 0u; u < ${TJ / 4}u; u++) {
        let j4 = j0 / 4u + u;
        if (j4 < p.J4) { rv[u] = R[tok * p.J4 + j4]; }
      }`
    : `for (var u = 0u; u < ${TJ / 4}u; u++) {
        for (var q = 0u; q < 4u; q++) {
          let j = j0 + u * 4u + q;
          if (j < p.J) { rv[u][q] = R[tok * p.J + j]; }
        }
      }`;
  let fma = "";
  for (let u = 0; u < TJ / 4; u++) {
    for (let q = 0; q < 4; q++) {
      fma += `acc[${u * 4 + q}] = fma(a, vec4f(rv[${u}][${q}]), acc[${u * 4 + q}]);\n`;
    }
  }
  return /* wgsl */ `
override HAS_BIAS: bool = false;
struct P { threads: u32, nx: u32, I: u32, J: u32, J4: u32, sp4: u32, jTiles: u32, k: u32,
  eS: u32, iS: u32, jS: u32 }
@group(0) @binding(0) var<storage, read> L: array<vec4f>;
@group(0) @binding(1) var<storage, read> R: array<${vecR ? "vec4f" : "f32"}>;
@group(0) @binding(2) var<storage, read> rows: array<u32>;
@group(0) @binding(3) var<storage, read> counts: array<u32>;
@group(0) @binding(4) var<storage, read> offsets: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> dBias: array<f32>;
@group(1) @binding(0) var<uniform> p: P;

@compute @workgroup_size(${MOE_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let id = gid.y * p.nx * ${MOE_WG}u + gid.x;
  if (id >= p.threads) { return; }
  let per = p.sp4 * p.jTiles;
  let e = id / per;
  let r = id % per;
  let i4 = r / p.jTiles;
  let jt = r % p.jTiles;
  let j0 = jt * ${TJ}u;
  var acc: array<vec4f, ${TJ}>;
  var bsum = vec4f(0.0);
  let start = offsets[e];
  let end = start + counts[e];
  for (var row = start; row < end; row++) {
    let a = L[row * p.sp4 + i4];
    let tok = rows[row] / p.k;
    var rv: array<vec4f, ${TJ / 4}>;
    ${loadR}
    ${fma}
    bsum += a;
  }
  for (var q = 0u; q < 4u; q++) {
    let i = i4 * 4u + q;
    if (i >= p.I) { break; }
    for (var jj = 0u; jj < ${TJ}u; jj++) {
      let j = j0 + jj;
      if (j < p.J) { out[e * p.eS + i * p.iS + j * p.jS] = acc[jj][q]; }
    }
    if (HAS_BIAS && jt == 0u) { dBias[e * p.I + i] = bsum[q]; }
  }
}
`;
}

/** WGSL of moe_bw.router (straight-through router gradient dS, see the header). */
export const MOE_BW_ROUTER_WGSL = /* wgsl */ `
struct P { N: u32, k: u32, E: u32, C: u32, yStride: u32, nx: u32 }
@group(0) @binding(0) var<storage, read> dOut: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;
@group(0) @binding(3) var<storage, read> sel: array<u32>;
@group(0) @binding(4) var<storage, read> scores: array<f32>;
@group(0) @binding(5) var<storage, read_write> dS: array<f32>;
@group(1) @binding(0) var<uniform> p: P;

@compute @workgroup_size(${MOE_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let t = gid.y * p.nx * ${MOE_WG}u + gid.x;
  if (t >= p.N) { return; }
  let base = t * p.E;
  for (var e = 0u; e < p.E; e++) { dS[base + e] = 0.0; }
  // Scores are sorted best first, so slot 0 holds the max.
  let m = scores[base + sel[t * p.k]];
  var z = 0.0;
  var gbar = 0.0;
  for (var j = 0u; j < p.k; j++) {
    let e = sel[t * p.k + j];
    let yr = pos[t * p.k + j] * p.yStride;
    var gj = 0.0;
    for (var c = 0u; c < p.C; c++) { gj = fma(dOut[t * p.C + c], y[yr + c], gj); }
    let w = exp(scores[base + e] - m);
    z += w;
    gbar += w * gj;
    dS[base + e] = gj;
  }
  gbar /= z;
  for (var j = 0u; j < p.k; j++) {
    let e = sel[t * p.k + j];
    dS[base + e] = exp(scores[base + e] - m) / z * (dS[base + e] - gbar);
  }
}
`;

const ACT_K = { name: "moe_bw.act", code: MOE_BW_ACT_WGSL };
const DACT_K = { name: "moe_bw.dact", code: MOE_BW_DACT_WGSL };
const PACK_K = {
  buffer: { name: "moe_bw.pack", code: bwPackWgsl(false) },
  texture: { name: "moe_bw.pack_texture", code: bwPackWgsl(true) },
};
const ROUTER_K = { name: "moe_bw.router", code: MOE_BW_ROUTER_WGSL };
const OUTER_K = {
  v: { name: "moe_bw.outer_v4", code: outerWgsl(true) },
  s: { name: "moe_bw.outer", code: outerWgsl(false) },
};

/** Sizes of one call (as moe.ts's MoeSizes). */
export interface MoeBwSizes {
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

function elementwise(
  g: Gpu,
  k: { name: string; code: string },
  pre: GPUBuffer,
  out: GPUBuffer,
  vec4s: number,
  activation: keyof typeof MOE_ACTIVATION,
): void {
  if (vec4s === 0) return;
  const [nx, ny] = grid1d(ceilDiv(vec4s, MOE_WG));
  g.recorder.dispatch({
    kernel: k,
    constants: { ACT: MOE_ACTIVATION[activation] },
    buffers: [pre, out],
    params: new Params().u32(vec4s).u32(nx),
    workgroups: [nx, ny],
  });
}

/** Records act = f(pre) over `vec4s` vec4s. */
export function moeActKernel(
  g: Gpu,
  act: GPUBuffer,
  pre: GPUBuffer,
  vec4s: number,
  activation: keyof typeof MOE_ACTIVATION,
): void {
  elementwise(g, ACT_K, pre, act, vec4s, activation);
}

/** Records grad = grad ⊙ f'(pre) in place over `vec4s` vec4s. */
export function moeDactKernel(
  g: Gpu,
  grad: GPUBuffer,
  pre: GPUBuffer,
  vec4s: number,
  activation: keyof typeof MOE_ACTIVATION,
): void {
  elementwise(g, DACT_K, pre, grad, vec4s, activation);
}

/**
 * Records a packed B operand: mode "projUp" (up-kernel layout, E·sp4 × C4·4
 * texels) from c_proj.weight, or "fcDown" (down-kernel layout, C4 × E·sp
 * texels) from c_fc.weight. `dst` holds width·height vec4s (a buffer, or
 * a texture of at least width × height: "hybrid" design).
 */
export function moePackBwKernel(
  g: Gpu,
  dst: GPUBuffer | GPUTextureView,
  w: GPUBuffer,
  mode: "projUp" | "fcDown",
  sz: MoeBwSizes,
): void {
  const s = sz.dff / sz.E;
  const sp4 = ceilDiv(s, 4);
  const C4 = ceilDiv(sz.C, 4);
  const [width, height] = mode === "projUp" ? [sz.E * sp4, C4 * 4] : [C4, sz.E * sp4 * 4];
  const n = width * height;
  const [nx, ny] = grid1d(ceilDiv(n, MOE_WG));
  g.recorder.dispatch({
    kernel: dst instanceof GPUBuffer ? PACK_K.buffer : PACK_K.texture,
    constants: { MODE: mode === "projUp" ? 0 : 1 },
    buffers: [w, dst],
    params: new Params().u32(n).u32(width).u32(sz.C).u32(sz.dff).u32(s).u32(sp4).u32(nx),
    workgroups: [nx, ny],
  });
}

/** Output strides of `moeOuterKernel`: element (e, i, j) at e·eS + i·iS + j·jS. */
export interface OuterStrides {
  /** Per expert. */
  eS: number;
  /** Per i (neuron within the expert). */
  iS: number;
  /** Per j (model column). */
  jS: number;
}

/**
 * Records out(e, i, j) = Σ over expert e's grouped rows p of L[p, i] ·
 * R[token(p), j], for i < s, j < C: L is a grouped (pmax × sp) operand, R
 * an (N, C) token matrix read through the plan. With `dBias`, also
 * dBias[e·s + i] = Σ_p L[p, i]. Every output element is written (zero for
 * an expert with no rows).
 */
export function moeOuterKernel(
  g: Gpu,
  out: GPUBuffer,
  dBias: GPUBuffer | null,
  L: GPUBuffer,
  R: GPUBuffer,
  plan: { rows: GPUBuffer; counts: GPUBuffer; offsets: GPUBuffer },
  sz: MoeBwSizes,
  strides: OuterStrides,
): void {
  const s = sz.dff / sz.E;
  const sp4 = ceilDiv(s, 4);
  const jTiles = ceilDiv(sz.C, MOE_OUTER_TJ);
  const threads = sz.E * sp4 * jTiles;
  const [nx, ny] = grid1d(ceilDiv(threads, MOE_WG));
  const vecR = sz.C % 4 === 0;
  // A binding every pipeline declares: a scratch buffer when there is no bias.
  const noBias = dBias ? null : g.pool.acquire(16, "moe_bw.nobias");
  g.recorder.dispatch({
    kernel: vecR ? OUTER_K.v : OUTER_K.s,
    constants: { HAS_BIAS: dBias ? 1 : 0 },
    buffers: [L, R, plan.rows, plan.counts, plan.offsets, out, dBias ?? noBias!],
    params: new Params().u32(threads).u32(nx).u32(s).u32(sz.C).u32(ceilDiv(sz.C, 4)).u32(sp4)
      .u32(jTiles).u32(sz.k).u32(strides.eS).u32(strides.iS).u32(strides.jS),
    workgroups: [nx, ny],
  });
  if (noBias) g.pool.release(noBias);
}

/**
 * Records the straight-through router gradient dS (N, E): for each token,
 * p = softmax of its k selected scores, g_j = dOut[t] · y row of slot j,
 * dS[t, e_j] = p_j (g_j − Σ_i p_i g_i), zero elsewhere. `y` is the grouped
 * expert output (pmax rows of `yStride` floats), `sel` (N, k) the top-k
 * experts (best first), `scores` (N, E).
 */
export function moeRouterGradKernel(
  g: Gpu,
  dS: GPUBuffer,
  dOut: GPUBuffer,
  y: GPUBuffer,
  pos: GPUBuffer,
  sel: GPUBuffer,
  scores: GPUBuffer,
  sz: MoeBwSizes,
  yStride: number,
): void {
  if (sz.N === 0) return;
  const [nx, ny] = grid1d(ceilDiv(sz.N, MOE_WG));
  g.recorder.dispatch({
    kernel: ROUTER_K,
    buffers: [dOut, y, pos, sel, scores, dS],
    params: new Params().u32(sz.N).u32(sz.k).u32(sz.E).u32(sz.C).u32(yStride).u32(nx),
    workgroups: [nx, ny],
  });
}
