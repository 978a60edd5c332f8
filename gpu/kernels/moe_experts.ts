/**
 * The MoE FFN's expert stages together, given a routing plan: pack the two
 * weights, the up and down grouped products, combine (`moe.ts` has the
 * layout).
 */
import type { Gpu } from "../runtime.ts";
import { scratchTexture } from "../scratch.ts";
import {
  type Fold,
  type MoeActivationName,
  type MoeDesign,
  moeDesign,
  moeMaxRows,
  type MoeOperand,
  type MoePlanBuffers,
  type MoeSizes,
  type MoeWeightBuffers,
  operandStore,
  weightStore,
} from "./moe.ts";
import { moeCombineKernel } from "./moe_combine.ts";
import { moeDownKernel, moeUpKernel } from "./moe_grouped.ts";
import { moePackKernel } from "./moe_pack.ts";

/** Inputs of `moeExpertsKernel`. */
export interface MoeExpertsInputs {
  /** (N, C) f32 FFN input. */
  x: GPUBuffer;
  /** The routing plan of x's tokens. */
  plan: MoePlanBuffers;
  /** The FFN's weights. */
  w: MoeWeightBuffers;
}

/** Options of `moeExpertsKernel`. */
export interface MoeExpertsOptions {
  /** The design asked for (falls back to "buffer" past the texture limit). */
  design: MoeDesign;
  /** Sizes of the call. */
  sz: MoeSizes;
  /** The FFN's activation. */
  activation: MoeActivationName;
}

/**
 * Records the expert stages (packs, up, down, combine) into `out` (N, C).
 * Scratch: textures kept for reuse ("texture"), or pool buffers released
 * once recorded ("buffer"). Returns the design used.
 */
export function moeExpertsKernel(
  g: Gpu,
  out: GPUBuffer,
  { x, plan, w }: MoeExpertsInputs,
  { design: requested, sz, activation }: MoeExpertsOptions,
): MoeDesign {
  if (sz.N === 0) return requested;
  const pmax = moeMaxRows(sz.N, sz.E, sz.k);
  const { design, folds } = moeDesign(g, sz, requested);
  const temps: GPUBuffer[] = [];
  const operand = (slot: string, f: Fold): MoeOperand => {
    const store = slot.startsWith("w") ? weightStore(design) : operandStore(design);
    if (store === "texture") return scratchTexture(g, "moe", slot, f.width, f.height);
    const b = g.pool.acquire(f.width * f.height * 16, `moe.${slot}`);
    temps.push(b);
    return b;
  };
  const [w1, w2] = [operand("w1", folds.w1), operand("w2", folds.w2)];
  const [act, y] = [operand("act", folds.act), operand("y", folds.y)];
  const grouped = { design, sz, pmax, folds };
  moePackKernel(g, w1, w.fcW, { source: "fc", layout: "up", sz });
  moePackKernel(g, w2, w.projW, { source: "proj", layout: "down", sz });
  moeUpKernel(g, act, { x, w: w1, bias: w.fcB, plan }, { ...grouped, activation });
  moeDownKernel(g, y, { act, w: w2, offsets: plan.offsets }, grouped);
  moeCombineKernel(g, out, { y, pos: plan.pos, bias: w.projB }, { design, sz, fold: folds.y });
  for (const b of temps) g.pool.release(b);
  return design;
}
