/**
 * The MoE FFN's grouped layout (the MoE view of the FFN): the router's selections
 * are grouped by expert, every expert's slice of the FFN runs on just its
 * tokens, and the results are combined. This module holds the sizes, the
 * layout and where each operand lives; the kernels are one file a job:
 * `moe_plan.ts` (the grouping), `moe_pack.ts` (weights into the grouped
 * layout), `moe_grouped.ts` (the up and down products), `moe_combine.ts`,
 * `moe_experts.ts` (the stages together) and `moe_backward.ts`.
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
 * Operands W1ᵀ, W2ᵀ, act and Y live in one of three designs:
 * - "texture": rgba32float storage textures (read-only where read: a texel
 *   load is cheaper than a storage-buffer vec4 on CPU adapters, see
 *   `matmul.ts`). act and Y fold 2^sh logical rows into one texture row
 *   (logical row r, texel t at x = (r & (2^sh − 1))·w + t, y = r >> sh) to
 *   stay within maxTextureDimension2D. Kept per size class as scratch for
 *   reuse (`releaseMoeScratch`).
 * - "buffer": the same texels in vec4 storage buffers, row-major (sh = 0),
 *   for adapters without read-only storage textures or sizes past the
 *   texture limit. Pool temporaries.
 * - "hybrid" (the training step's): W1ᵀ, W2ᵀ in textures, act and Y in
 *   buffers, which the training op keeps for its backward.
 *
 * FLOPs: the useful work is 4·N·k·s·C (up and down; the dense FFN's is
 * 4·N·d_ff·C, so the ratio is k/E). The kernels also run the padding, at
 * most E·(MOE_ROW_TILE − 1) rows and sp − s columns per expert, read the
 * weights once more to pack them (2·d_ff·C) and read N·k·C values to
 * combine.
 */
import { GpuError } from "../errors.ts";
import type { Gpu } from "../runtime.ts";
import { releaseScratch } from "../scratch.ts";
import { ceilDiv } from "../util.ts";

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
export type MoeStore = "texture" | "buffer";

/** A grouped operand: a vec4 buffer or an rgba32float texture. */
export type MoeOperand = GPUBuffer | GPUTextureView;

/** Where a design keeps the packed weights W1ᵀ, W2ᵀ (the B operands). */
export function weightStore(d: MoeDesign): MoeStore {
  return d === "buffer" ? "buffer" : "texture";
}

/** Where a design keeps the grouped rows act and Y. */
export function operandStore(d: MoeDesign): MoeStore {
  return d === "texture" ? "texture" : "buffer";
}

/** Activation codes of the `ACT` override (as `activation.ts`). */
export const MOE_ACTIVATION = { relu: 0, gelu: 1 } as const;

/** Name of an MoE FFN activation. */
export type MoeActivationName = keyof typeof MOE_ACTIVATION;

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

/** The folds of the grouped operands: packed W1ᵀ, W2ᵀ, act and Y. */
export interface MoeFolds {
  /** Packed W1ᵀ (E·sp4 × C4·4 texels), the up product's B. */
  w1: Fold;
  /** Packed W2ᵀ (C4 × E·sp texels), the down product's B. */
  w2: Fold;
  /** Activations (pmax × sp4 texels). */
  act: Fold;
  /** Expert outputs Y (pmax × C4 texels). */
  y: Fold;
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

/** The folds of every grouped operand, or null where a texture would pass `limit`. */
export function moeFolds(
  design: MoeDesign,
  sz: MoeSizes,
  pmax: number,
  limit: number,
): MoeFolds | null {
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
 * The design to use: the requested one (callers ask for "texture" or
 * "hybrid" only where WGSL has read-only storage textures), falling back to
 * "buffer" when a texture would pass the device's maxTextureDimension2D.
 */
export function moeDesign(
  g: Gpu,
  sz: MoeSizes,
  requested: MoeDesign,
): { design: MoeDesign; folds: MoeFolds } {
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
 * Destroys the MoE scratch textures (otherwise kept for reuse). Call only
 * when no recorded work still uses them (after a sync).
 */
export function releaseMoeScratch(g: Gpu): void {
  releaseScratch(g, "moe");
}
