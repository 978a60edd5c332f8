/**
 * The MoE FFN's combine (layouts in `moe.ts`):
 *   Y, pos, b2 | out     out[t] = b2 + Σ_{j<k} Y[pos[t·k + j]], j ascending:
 * each token's sum in a fixed order, no scatter. The training backward
 * combines dX the same way.
 *
 * Launch: one thread per (token, MOE_COMBINE_TEXELS texels of its row), so
 * the k row indices are loaded once per thread; 64 per workgroup, 2-D grid
 * past 65535 groups. The bias is a dummy buffer when HAS_BIAS is false.
 */
import { defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { dummyBuffer } from "../scratch.ts";
import { ceilDiv, Params } from "../util.ts";
import { flatEntry } from "../wgsl.ts";
import {
  type Fold,
  MOE_WG,
  type MoeDesign,
  type MoeOperand,
  type MoeSizes,
  operandStore,
} from "./moe.ts";
import { foldFields, operandWgsl, pushFold } from "./moe_operand.ts";

/** Texels of one output row per combine thread. */
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
struct P { n: u32, C: u32, C4: u32, k: u32, chunks: u32, ${foldFields("a")} }
${operandWgsl(operandStore(design), "read", 0, ["y", "ldA", "a"])}
@group(0) @binding(1) var<storage, read> pos: array<u32>;
@group(0) @binding(2) var<storage, read> bias: array<${elem}>;
@group(0) @binding(3) var<storage, read_write> out: array<${elem}>;
@group(1) @binding(0) var<uniform> p: P;

${flatEntry(MOE_WG)}
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

/** Inputs of the combine. */
export interface MoeCombineInputs {
  /** Grouped expert outputs, folded as `fold`. */
  y: MoeOperand;
  /** (N·k) grouped row of each selection (the plan's). */
  pos: GPUBuffer;
  /** (C) bias, or null. */
  bias: GPUBuffer | null;
}

/** Design, sizes and the fold of y. */
export interface MoeCombineOptions {
  /** Where y lives. */
  design: MoeDesign;
  /** Sizes of the call. */
  sz: MoeSizes;
  /** Fold of y. */
  fold: Fold;
}

/** Records out (N, C) = b2 + Σ over each token's k selections (slot order) of its y rows. */
export function moeCombineKernel(
  g: Gpu,
  out: GPUBuffer,
  { y, pos, bias }: MoeCombineInputs,
  { design, sz, fold }: MoeCombineOptions,
): void {
  const C4 = ceilDiv(sz.C, 4);
  const chunks = ceilDiv(C4, MOE_COMBINE_TEXELS);
  const n = sz.N * chunks;
  const vecOut = sz.C % 4 === 0;
  g.recorder.dispatchFlat(n, MOE_WG, {
    kernel: defineKernel(
      `moe.combine_${operandStore(design)}${vecOut ? "_v4" : ""}`,
      () => combineWgsl(design, vecOut),
    ),
    constants: { HAS_BIAS: bias ? 1 : 0 },
    buffers: [y, pos, bias ?? dummyBuffer(g), out],
    params: pushFold(new Params().u32(n).u32(sz.C).u32(C4).u32(sz.k).u32(chunks), fold),
  });
}
