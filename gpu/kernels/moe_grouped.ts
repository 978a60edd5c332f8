/**
 * The MoE FFN's grouped matmuls (layouts in `moe.ts`): one dispatch per
 * stage for all experts ("per expert family, not per expert").
 *   up    x, rows, W1ᵀ, b1, counts, offsets | act
 *         act[p] = act(x[token of rows[p]] · W1[e]ᵀ + b1[e]) for the expert
 *         e whose segment holds row p; padding rows and columns ≥ s are
 *         stored as zeros (so Y's padding rows are zero too).
 *         Threads: (pmax/8)·⌈sp4/4⌉.
 *   down  act, W2ᵀ, offsets | Y     Y[p] = act[p] · W2[:, e]ᵀ.
 *         Threads: (pmax/8)·⌈C4/4⌉.
 * Biases are a dummy buffer when HAS_BIAS is false. The training backward
 * runs both with other packed B operands (see `moe_pack.ts`).
 *
 * Tiling: each invocation owns a MOE_ROW_TILE × 16 tile (8 rows × 4 vec4
 * accumulators, as `matmul_register.ts`: no workgroup memory, K walked 4 at
 * a time) of one expert: segments are padded to whole row tiles so a tile
 * never spans two experts, and the invocation finds its expert by a binary
 * search of offsets (returning at once past offsets[E]). Invocation id =
 * rowTile · colTiles + colTile; 64 per workgroup, 2-D grid past 65535 groups.
 * x (the FFN input) is read straight from its buffer through `rows` by the
 * up kernel: a gather pass into a texture cost more than the slower loads
 * it saved.
 */
import { defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { dummyBuffer } from "../scratch.ts";
import { ceilDiv, flatGrid, Params } from "../util.ts";
import { flatEntry } from "../wgsl.ts";
import { activationFns } from "./activation.ts";
import {
  MOE_ACT_IDENTITY,
  MOE_ACTIVATION,
  MOE_ROW_TILE,
  MOE_WG,
  type MoeActivationName,
  type MoeDesign,
  type MoeFolds,
  type MoeOperand,
  type MoePlanBuffers,
  type MoeSizes,
  operandStore,
  weightStore,
} from "./moe.ts";
import { foldFields, operandWgsl, pushFold, readB } from "./moe_operand.ts";

/**
 * Output columns per register tile, in vec4s (16 columns; fewer when the
 * output is narrower). An 8×32 tile spills on CPU adapters (measured 10× slower).
 */
export const MOE_TILE_COLUMNS4 = 4;

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

/**
 * Opens `main` of a grouped product: invocation gi owns row tile `row` and
 * column tile `col4` (in vec4s) of expert `e`, and returns past the rows in use.
 */
function tileEntry(tn4: number): string {
  return /* wgsl */ `${flatEntry(MOE_WG, { id: "gi", bound: "p.threads" })}
  let row = (gi / p.colTiles) * TM;
  let col4 = (gi % p.colTiles) * ${tn4}u;
  if (row >= offsets[p.E]) { return; }
  let e = expertOf(row);`;
}

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

// Rows of h come straight from x through the plan (padding rows read token 0
// and are masked in the epilogue): a separate gather pass cost more than it
// saved.
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
  return activationFns("vec4f") + /* wgsl */ `
override HAS_BIAS: bool = false;
const TM = ${MOE_ROW_TILE}u;
struct P { colTiles: u32, threads: u32, E: u32, K4: u32, s: u32, sp4: u32,
  bWidth: u32, C: u32, k: u32, nk: u32, xStride: u32, ${foldFields("d")} }
@group(0) @binding(0) var<storage, read> x: array<${vecX ? "vec4f" : "f32"}>;
@group(0) @binding(1) var<storage, read> rows: array<u32>;
${readB(weightStore(design), 2)}
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> counts: array<u32>;
@group(0) @binding(5) var<storage, read> offsets: array<u32>;
${operandWgsl(operandStore(design), "write", 6, ["actOut", "stAct", "d"])}
@group(1) @binding(0) var<uniform> p: P;
${upInput(vecX)}
${EXPERT_OF}

fn activate(v: vec4f) -> vec4f {
  if (ACT == ${MOE_ACT_IDENTITY}u) { return v; }
  return act(v);
}

${tileEntry(tn4)}
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
struct P { colTiles: u32, threads: u32, E: u32, K4: u32, sp: u32, C4: u32,
  bWidth: u32, ${foldFields("a")}, ${foldFields("d")} }
${operandWgsl(operandStore(design), "read", 0, ["act", "ldA", "a"])}
${readB(weightStore(design), 1)}
@group(0) @binding(2) var<storage, read> offsets: array<u32>;
${operandWgsl(operandStore(design), "write", 3, ["y", "stY", "d"])}
@group(1) @binding(0) var<uniform> p: P;
${EXPERT_OF}

${tileEntry(tn4)}
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

// Launch shape of a grouped product with n4 output texels per row.
function groupedLaunch(pmax: number, n4: number) {
  const tn4 = Math.min(MOE_TILE_COLUMNS4, n4);
  const colTiles = ceilDiv(n4, tn4);
  const threads = (pmax / MOE_ROW_TILE) * colTiles;
  return { tn4, colTiles, threads, workgroups: flatGrid(threads, MOE_WG) };
}

/** Design, sizes and folds of a grouped product. */
export interface MoeGroupedOptions {
  /** Where the operands live. */
  design: MoeDesign;
  /** Sizes of the call. */
  sz: MoeSizes;
  /** Grouped rows the launch covers (`moeMaxRows`). */
  pmax: number;
  /** Folds of the operands (`moeDesign`). */
  folds: MoeFolds;
}

/** Inputs of the up product. */
export interface MoeUpInputs {
  /** (N, C) f32 token rows. */
  x: GPUBuffer;
  /** Packed B in the "up" layout (W1ᵀ in the forward). */
  w: MoeOperand;
  /** (d_ff) bias, or null. */
  bias: GPUBuffer | null;
  /** The routing plan. */
  plan: MoePlanBuffers;
}

/**
 * Records act = activation(x[token of row] · W1[e]ᵀ + b1[e]) for every
 * grouped row (one dispatch), act folded as `folds.act`. "identity" stores
 * the pre-activation (padding still zero).
 */
export function moeUpKernel(
  g: Gpu,
  act: MoeOperand,
  { x, w, bias, plan }: MoeUpInputs,
  opts: MoeGroupedOptions & { activation: MoeActivationName | "identity" },
): void {
  const { design, sz, folds } = opts;
  const s = sz.dff / sz.E;
  const sp4 = ceilDiv(s, 4);
  const vecX = sz.C % 4 === 0;
  const l = groupedLaunch(opts.pmax, sp4);
  const params = new Params().u32(l.colTiles).u32(l.threads).u32(sz.E)
    .u32(ceilDiv(sz.C, 4)).u32(s).u32(sp4).u32(folds.w1.width).u32(sz.C).u32(sz.k)
    .u32(sz.N * sz.k).u32(vecX ? sz.C / 4 : sz.C);
  g.recorder.dispatch({
    kernel: defineKernel(
      `moe.up_${design}_t${l.tn4}${vecX ? "_vx" : ""}`,
      () => upWgsl(design, l.tn4, vecX),
    ),
    constants: {
      HAS_BIAS: bias ? 1 : 0,
      ACT: opts.activation === "identity" ? MOE_ACT_IDENTITY : MOE_ACTIVATION[opts.activation],
    },
    buffers: [x, plan.rows, w, bias ?? dummyBuffer(g), plan.counts, plan.offsets, act],
    params: pushFold(params, folds.act),
    workgroups: l.workgroups,
  });
}

/** Inputs of the down product. */
export interface MoeDownInputs {
  /** Grouped activations, folded as `folds.act`. */
  act: MoeOperand;
  /** Packed B in the "down" layout (W2ᵀ in the forward). */
  w: MoeOperand;
  /** The plan's padded segment starts. */
  offsets: GPUBuffer;
}

/** Records y = act · W2[:, e]ᵀ for every grouped row (one dispatch), y folded as `folds.y`. */
export function moeDownKernel(
  g: Gpu,
  y: MoeOperand,
  { act, w, offsets }: MoeDownInputs,
  { design, sz, pmax, folds }: MoeGroupedOptions,
): void {
  const sp4 = ceilDiv(sz.dff / sz.E, 4);
  const C4 = ceilDiv(sz.C, 4);
  const l = groupedLaunch(pmax, C4);
  const params = new Params().u32(l.colTiles).u32(l.threads).u32(sz.E).u32(sp4)
    .u32(sp4 * 4).u32(C4).u32(folds.w2.width);
  pushFold(params, folds.act);
  g.recorder.dispatch({
    kernel: defineKernel(`moe.down_${design}_t${l.tn4}`, () => downWgsl(design, l.tn4)),
    buffers: [act, w, offsets, y],
    params: pushFold(params, folds.y),
    workgroups: l.workgroups,
  });
}
