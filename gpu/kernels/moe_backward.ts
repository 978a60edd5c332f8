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
 * Kernels (64 threads per workgroup unless said, grid1d past 65535 groups;
 * bindings: inputs | outputs, params in group 1):
 *   dact      pre, act | dAct (in place), gdot       one thread per grouped
 *             row p: dPre = dAct ⊙ f'(pre) in place, and gdot[p] = act[p] ·
 *             dAct[p] (over the sp columns), which is dOut[token] · y[p]
 *             (y = act · W2ᵀ, dAct = dOut · W2): the router's g below, from
 *             s values instead of C.
 *   outer     L, R, rows, counts, offsets | out, dBias
 *             out[e·eS + i·iS + j·jS] = Σ_{p ∈ rows of e} L[p, i]·R[token(p), j]
 *             (i < s, j < C; L grouped sp wide, R (N, C) gathered through
 *             the plan). One thread per (e, ti i, tj j) tile of the design
 *             (`MOE_OUTER_DESIGNS`; its own workgroup size), looping over
 *             the expert's rows in order: deterministic, no atomics, and
 *             an expert with no rows writes exact zeros. With HAS_BIAS the
 *             j-tile-0 threads also write dBias[e·s + i] = Σ_p L[p, i].
 *             dW1 = outer(dPre, h) (eS s·C, iS C, jS 1); dW2 = outer(act,
 *             dOut) (eS s, iS 1, jS d_ff: c_proj.weight's columns).
 *   router    gdot, pos, sel, scores | dS     one thread per token:
 *             g_j = gdot[pos[t·k + j]], p = softmax of the token's k
 *             selected scores, dS[t, sel_j] = p_j (g_j − Σ_i p_i g_i), zero
 *             for unselected experts. dS's row first holds g (so no
 *             per-thread array of k values is needed).
 *
 * Work: outer is N·k·s·C multiply-adds per weight (the selected experts
 * only), dact pmax·sp, router N·k (plus its softmax).
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

/**
 * Register-tile shapes of moe_bw.outer: each thread owns ti i × tj j of one
 * expert, wg threads per workgroup. Per grouped row a thread loads ti + tj
 * values for ti·tj multiply-adds. "wide" is for CPU adapters, where every
 * load from a lane-dependent address is a gather costing more than a dozen
 * FMAs: its 8 × 16 tile (128 accumulators, partly spilled to the stack,
 * still cheaper than the gathers) halves the kernel's time on llvmpipe;
 * 16 × 16 measured no faster and took 3× longer to compile. Its small
 * workgroup spreads the few threads (E·⌈s/8⌉·⌈C/16⌉) over the cores.
 * "narrow" keeps 4× more threads, for GPUs that need them to fill their cores.
 */
export const MOE_OUTER_DESIGNS = {
  narrow: { ti: 4, tj: 8, wg: MOE_WG },
  wide: { ti: 8, tj: 16, wg: 16 },
} as const;

/** A tile shape of moe_bw.outer. */
export type MoeOuterDesign = keyof typeof MOE_OUTER_DESIGNS;

/** The outer design for this adapter: "wide" on CPU (fallback) adapters, else "narrow". */
export function moeOuterDesign(g: Gpu): MoeOuterDesign {
  return g.dev.summary.isFallback ? "wide" : "narrow";
}

/** WGSL of moe_bw.dact (per grouped row: dPre in place and gdot, see the header). */
export const MOE_BW_DACT_WGSL = activationFns("vec4f") + /* wgsl */ `
${bindings`
  params rows: u32, sp4: u32
  read   pre: array<vec4f>, actIn: array<vec4f>
  write  g: array<vec4f>, gdot: array<f32>
`}

${flatEntry(MOE_WG, { id: "r", bound: "p.rows" })}
  var dot = vec4f(0.0);
  for (var t = 0u; t < p.sp4; t++) {
    let i = r * p.sp4 + t;
    let d = g[i];
    dot = fma(actIn[i], d, dot);
    g[i] = d * dact(pre[i]);
  }
  gdot[r] = dot.x + dot.y + dot.z + dot.w;
}
`;

// The outer kernel of tile ti × tj (multiples of 4). Every accumulator is a
// named vec4 over 4 i (a{t}_{u}_{q}: i block t, column 4·(j4 + u) + q), not an
// array: CPU adapters keep dynamically indexed arrays in memory. KSEL = k
// (an override, so the per-row rows[row] / k is a multiply, not a division).
function outerWgsl(ti: number, tj: number, wg: number, vecR: boolean): string {
  const T4 = ti / 4;
  const U4 = tj / 4;
  const decl: string[] = [];
  const loads: string[] = [];
  const fma: string[] = [];
  const store: string[] = [];
  for (let t = 0; t < T4; t++) {
    decl.push(`var bsum${t} = vec4f(0.0);`);
    loads.push(`let l${t} = L[row * p.sp4 + min(i4 + ${t}u, p.sp4 - 1u)];`);
    fma.push(`bsum${t} += l${t};`);
  }
  for (let u = 0; u < U4; u++) {
    const j = (q: number) => `min((j4 + ${u}u) * 4u + ${q}u, p.J - 1u)`;
    loads.push(
      vecR
        ? `let r${u} = R[tok * p.J4 + min(j4 + ${u}u, p.J4 - 1u)];`
        : `let r${u} = vec4f(${[0, 1, 2, 3].map((q) => `R[tok * p.J + ${j(q)}]`).join(", ")});`,
    );
  }
  for (let t = 0; t < T4; t++) {
    for (let u = 0; u < U4; u++) {
      for (let q = 0; q < 4; q++) {
        const a = `a${t}_${u}_${q}`;
        decl.push(`var ${a} = vec4f(0.0);`);
        fma.push(`${a} = fma(l${t}, vec4f(r${u}[${q}]), ${a});`);
      }
    }
    for (let qi = 0; qi < 4; qi++) {
      const cols: string[] = [];
      for (let c = 0; c < tj; c++) {
        const a = `a${t}_${c >> 2}_${c & 3}[${qi}]`;
        cols.push(`if (j4 * 4u + ${c}u < p.J) { out[base + (j4 * 4u + ${c}u) * p.jS] = ${a}; }`);
      }
      store.push(`if ((i4 + ${t}u) * 4u + ${qi}u < p.I) {
    let i = (i4 + ${t}u) * 4u + ${qi}u;
    let base = e * p.eS + i * p.iS;
    ${cols.join("\n    ")}
    if (HAS_BIAS && jt == 0u) { dBias[e * p.I + i] = bsum${t}[${qi}]; }
  }`);
    }
  }
  return /* wgsl */ `
override HAS_BIAS: bool = false;
override KSEL: u32 = 1u;
${bindings`
  params threads: u32, I: u32, J: u32, J4: u32, sp4: u32, iTiles: u32, jTiles: u32
  params eS: u32, iS: u32, jS: u32
  read   L: array<vec4f>, R: array<${vecR ? "vec4f" : "f32"}>
  read   rows: array<u32>, counts: array<u32>, offsets: array<u32>
  write  out: array<f32>, dBias: array<f32>
`}

${flatEntry(wg, { id: "id", bound: "p.threads" })}
  let per = p.iTiles * p.jTiles;
  let e = id / per;
  let it = (id % per) / p.jTiles;
  let jt = id % p.jTiles;
  let i4 = it * ${T4}u;
  let j4 = jt * ${U4}u;
  ${decl.join("\n  ")}
  let start = offsets[e];
  let end = start + counts[e];
  for (var row = start; row < end; row++) {
    let tok = rows[row] / KSEL;
    ${[...loads, ...fma].join("\n    ")}
  }
  ${store.join("\n  ")}
}
`;
}

/** WGSL of moe_bw.router (straight-through router gradient dS, see the header). */
export const MOE_BW_ROUTER_WGSL = /* wgsl */ `
${bindings`
  params N: u32, k: u32, E: u32
  read   gdot: array<f32>, pos: array<u32>, sel: array<u32>, scores: array<f32>
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
    let gj = gdot[pos[t * p.k + j]];
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

/** Grouped operands of `moeDactKernel`: `rows` rows of sp4 vec4s each. */
export interface MoeDactOperands {
  /** dAct on entry, dPre = dAct ⊙ f'(pre) on return. */
  grad: GPUBuffer;
  /** Pre-activations. */
  pre: GPUBuffer;
  /** Activations (the pre buffer itself for ReLU, whose f' is read from act > 0). */
  act: GPUBuffer;
  /** (rows) f32: receives act[p] · dAct[p] per row. */
  gdot: GPUBuffer;
}

/**
 * Records, per grouped row p, gdot[p] = act[p] · grad[p] and then grad =
 * grad ⊙ f'(pre) in place.
 */
export function moeDactKernel(
  g: Gpu,
  { grad, pre, act, gdot }: MoeDactOperands,
  { rows, sp4, activation }: { rows: number; sp4: number; activation: MoeActivationName },
): void {
  if (rows === 0) return;
  g.recorder.dispatchFlat(rows, MOE_WG, {
    kernel: DACT,
    constants: { ACT: MOE_ACTIVATION[activation] },
    buffers: [pre, act, grad, gdot],
    params: new Params().u32(rows).u32(sp4),
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
 * rows). `design` picks the tile shape (default `moeOuterDesign(g)`).
 */
export function moeOuterKernel(
  g: Gpu,
  { dW, dBias }: MoeOuterOutputs,
  { L, R, plan }: MoeOuterInputs,
  { sz, strides, design = moeOuterDesign(g) }: {
    sz: MoeSizes;
    strides: OuterStrides;
    design?: MoeOuterDesign;
  },
): void {
  const { ti, tj, wg } = MOE_OUTER_DESIGNS[design];
  const s = sz.dff / sz.E;
  const sp4 = ceilDiv(s, 4);
  const iTiles = ceilDiv(s, ti);
  const jTiles = ceilDiv(sz.C, tj);
  const threads = sz.E * iTiles * jTiles;
  const vecR = sz.C % 4 === 0;
  // A binding every pipeline declares: a scratch buffer when there is no bias.
  const noBias = dBias ? null : g.pool.acquire(16, "moe_bw.nobias");
  g.recorder.dispatchFlat(threads, wg, {
    kernel: defineKernel(
      `moe_bw.outer_${design}${vecR ? "_v4" : ""}`,
      () => outerWgsl(ti, tj, wg, vecR),
    ),
    constants: { HAS_BIAS: dBias ? 1 : 0, KSEL: sz.k },
    buffers: [L, R, plan.rows, plan.counts, plan.offsets, dW, dBias ?? noBias!],
    params: new Params().u32(threads).u32(s).u32(sz.C).u32(ceilDiv(sz.C, 4)).u32(sp4)
      .u32(iTiles).u32(jTiles).u32(strides.eS).u32(strides.iS).u32(strides.jS),
  });
  if (noBias) g.pool.release(noBias);
}

/** Inputs of `moeRouterGradKernel`. */
export interface MoeRouterGradInputs {
  /** (pmax) dOut[token] · y of each grouped row (`moeDactKernel`'s gdot). */
  gdot: GPUBuffer;
  /** (N·k) grouped row of each selection. */
  pos: GPUBuffer;
  /** (N, k) top-k experts, best first. */
  sel: GPUBuffer;
  /** (N, E) router scores. */
  scores: GPUBuffer;
}

/**
 * Records the straight-through router gradient dS (N, E): for each token,
 * p = softmax of its k selected scores, g_j = gdot of slot j's grouped row,
 * dS[t, e_j] = p_j (g_j − Σ_i p_i g_i), zero elsewhere.
 */
export function moeRouterGradKernel(
  g: Gpu,
  dS: GPUBuffer,
  { gdot, pos, sel, scores }: MoeRouterGradInputs,
  sz: MoeSizes,
): void {
  if (sz.N === 0) return;
  g.recorder.dispatchFlat(sz.N, MOE_WG, {
    kernel: ROUTER,
    buffers: [gdot, pos, sel, scores, dS],
    params: new Params().u32(sz.N).u32(sz.k).u32(sz.E),
  });
}
