/**
 * Kernels of the sparse MoE FFN's training step (`core/nn/moe_ffn_train.ts`)
 * that the forward lacks. The grouped layout, plan and sizes are `moe.ts`'s
 * (N tokens, C, d_ff = E·s, k, C4 = ⌈C/4⌉, sp4 = ⌈s/4⌉, sp = 4·sp4, pmax
 * grouped rows, expert e's rows [offsets[e], offsets[e] + counts[e]),
 * rows[p] = selection id t·k + j). Grouped operands here are in buffers
 * (the "buffer" and "hybrid" designs): row p of a (pmax × w texels)
 * operand at vec4 p·w; the packed weights go to a buffer or, in the hybrid
 * design, to a storage texture.
 *
 * The backward's row-parallel grouped products run `moe_grouped.ts`'s up /
 * down kernels with other packed B operands (`moe_pack.ts`):
 *   dAct = dOut[token] · W2[:, e-slice]   up kernel (identity), B = c_proj packed "up"
 *   dXr  = dPre · W1[e-slice]             down kernel,          B = c_fc packed "down"
 * and the forward's activation of the kept pre-activations is
 * `activation.ts`'s kernel.
 *
 * Kernels (64 threads per workgroup, grid1d past 65535 groups; bindings:
 * inputs | outputs, params in group 1):
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
 * only), router N·k·C.
 */
import { defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { ceilDiv, Params } from "../util.ts";
import { bindings, flatEntry } from "../wgsl.ts";
import { activationFns } from "./activation.ts";
import {
  MOE_ACTIVATION,
  MOE_WG,
  type MoeActivationName,
  type MoePlanBuffers,
  type MoeSizes,
} from "./moe.ts";

/** Columns (j) per thread of the outer-product kernel. */
export const MOE_OUTER_TJ = 8;

/** WGSL of moe_bw.dact: g = g ⊙ f'(pre) in place over vec4s. */
export const MOE_BW_DACT_WGSL = activationFns("vec4f") + /* wgsl */ `
${bindings`
  params n: u32
  read   pre: array<vec4f>
  write  g: array<vec4f>
`}

${flatEntry(MOE_WG)}
  g[i] = g[i] * dact(pre[i]);
}
`;

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
${bindings`
  params threads: u32, I: u32, J: u32, J4: u32, sp4: u32, jTiles: u32, k: u32
  params eS: u32, iS: u32, jS: u32
  read   L: array<vec4f>, R: array<${vecR ? "vec4f" : "f32"}>
  read   rows: array<u32>, counts: array<u32>, offsets: array<u32>
  write  out: array<f32>, dBias: array<f32>
`}

${flatEntry(MOE_WG, { id: "id", bound: "p.threads" })}
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
${bindings`
  params N: u32, k: u32, E: u32, C: u32, yStride: u32
  read   dOut: array<f32>, y: array<f32>, pos: array<u32>, sel: array<u32>
  read   scores: array<f32>
  write  dS: array<f32>
`}

${flatEntry(MOE_WG, { id: "t", bound: "p.N" })}
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

const DACT = defineKernel("moe_bw.dact", () => MOE_BW_DACT_WGSL);
const ROUTER = defineKernel("moe_bw.router", () => MOE_BW_ROUTER_WGSL);

/** Records grad = grad ⊙ f'(pre) in place over `vec4s` vec4s. */
export function moeDactKernel(
  g: Gpu,
  grad: GPUBuffer,
  pre: GPUBuffer,
  vec4s: number,
  activation: MoeActivationName,
): void {
  if (vec4s === 0) return;
  g.recorder.dispatchFlat(vec4s, MOE_WG, {
    kernel: DACT,
    constants: { ACT: MOE_ACTIVATION[activation] },
    buffers: [pre, grad],
    params: new Params().u32(vec4s),
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

/** Outputs of `moeOuterKernel`. */
export interface MoeOuterOutputs {
  /** The weight gradient, strided as `strides`. */
  dW: GPUBuffer;
  /** (d_ff) column sums of L, or null to skip them. */
  dBias: GPUBuffer | null;
}

/** Inputs of `moeOuterKernel`. */
export interface MoeOuterInputs {
  /** Grouped (pmax × sp) operand. */
  L: GPUBuffer;
  /** (N, C) token matrix read through the plan. */
  R: GPUBuffer;
  /** The routing plan. */
  plan: Omit<MoePlanBuffers, "pos">;
}

/**
 * Records dW(e, i, j) = Σ over expert e's grouped rows p of L[p, i] ·
 * R[token(p), j], for i < s, j < C; with `dBias`, also dBias[e·s + i] =
 * Σ_p L[p, i]. Every output element is written (zero for an expert with no
 * rows).
 */
export function moeOuterKernel(
  g: Gpu,
  { dW, dBias }: MoeOuterOutputs,
  { L, R, plan }: MoeOuterInputs,
  { sz, strides }: { sz: MoeSizes; strides: OuterStrides },
): void {
  const s = sz.dff / sz.E;
  const sp4 = ceilDiv(s, 4);
  const jTiles = ceilDiv(sz.C, MOE_OUTER_TJ);
  const threads = sz.E * sp4 * jTiles;
  const vecR = sz.C % 4 === 0;
  // A binding every pipeline declares: a scratch buffer when there is no bias.
  const noBias = dBias ? null : g.pool.acquire(16, "moe_bw.nobias");
  g.recorder.dispatchFlat(threads, MOE_WG, {
    kernel: defineKernel(`moe_bw.outer${vecR ? "_v4" : ""}`, () => outerWgsl(vecR)),
    constants: { HAS_BIAS: dBias ? 1 : 0 },
    buffers: [L, R, plan.rows, plan.counts, plan.offsets, dW, dBias ?? noBias!],
    params: new Params().u32(threads).u32(s).u32(sz.C).u32(ceilDiv(sz.C, 4)).u32(sp4)
      .u32(jTiles).u32(sz.k).u32(strides.eS).u32(strides.iS).u32(strides.jS),
  });
  if (noBias) g.pool.release(noBias);
}

/** Inputs of `moeRouterGradKernel`. */
export interface MoeRouterGradInputs {
  /** (N, C) gradient of the FFN output. */
  dOut: GPUBuffer;
  /** Grouped expert outputs: pmax rows of `yStride` floats. */
  y: GPUBuffer;
  /** (N·k) grouped row of each selection. */
  pos: GPUBuffer;
  /** (N, k) top-k experts, best first. */
  sel: GPUBuffer;
  /** (N, E) router scores. */
  scores: GPUBuffer;
}

/**
 * Records the straight-through router gradient dS (N, E): for each token,
 * p = softmax of its k selected scores, g_j = dOut[t] · y row of slot j,
 * dS[t, e_j] = p_j (g_j − Σ_i p_i g_i), zero elsewhere.
 */
export function moeRouterGradKernel(
  g: Gpu,
  dS: GPUBuffer,
  { dOut, y, pos, sel, scores }: MoeRouterGradInputs,
  { sz, yStride }: { sz: MoeSizes; yStride: number },
): void {
  if (sz.N === 0) return;
  g.recorder.dispatchFlat(sz.N, MOE_WG, {
    kernel: ROUTER,
    buffers: [dOut, y, pos, sel, scores, dS],
    params: new Params().u32(sz.N).u32(sz.k).u32(sz.E).u32(sz.C).u32(yStride),
  });
}
