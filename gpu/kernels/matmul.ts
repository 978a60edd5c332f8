/**
 * Matrix multiply, batched, either operand transposed, with optional bias
 * and accumulation:
 *
 *   C[z] (M×N) = op(A[z]) · op(B[z]) + bias (+ C[z] when accumulating)
 *   op(A) = A (M×K row-major), or Aᵀ when transA (A stored K×M)
 *   op(B) = B (K×N row-major), or Bᵀ when transB (B stored N×K)
 *
 * Batches sit `aStride` / `bStride` elements apart (0 = shared by every
 * batch, the Linear-layer case); `sumBatch` instead sums every batch's
 * product into one M×N result (the weight gradient of a shared B).
 *
 * Three designs, because adapters differ (`gpu/autotune.ts` picks one):
 *
 * - "shared" (`matmul_shared.ts`): workgroup-memory tiling, for real GPUs.
 * - "register" (`matmul_register.ts`): per-invocation register tiles fed
 *   straight from the storage buffers, vec4 loads where the contiguous axis
 *   is a multiple of 4; no workgroup memory.
 * - "texture" (`matmul_register.ts`): the same register tiling, with both
 *   operands first packed (one small pass each, which also applies the
 *   transposes) into rgba32float read-only storage textures. The scratch
 *   textures are kept per size class for reuse (`releaseMatmulScratch` frees
 *   them); products whose textures would pass maxTextureDimension2D are
 *   split into batch groups, row and column blocks and accumulated K slices.
 *
 * Launch per call: "shared" and "register" one dispatch (grid over C tiles ×
 * batch); "texture" two pack dispatches and one matmul dispatch. `sumBatch`
 * records one launch per batch, each accumulating.
 *
 * Why "texture" exists: software rasterizers such as llvmpipe load every
 * storage-buffer element per invocation behind a bounds check, while a
 * read-only storage-texture texel costs about a third of that; with the
 * loads taken out the same loops run several times faster, so on such an
 * adapter the loads decide everything, and texture-fed tiles win although
 * they need two pack passes. Real GPUs prefer the "shared" design; the
 * autotuner measures which one an adapter gets (`deno task bench` prints
 * what each design reaches). Small products (under TEXTURE_MIN_MACS) stay
 * buffer-fed: there the two packs' dispatches cost more than they save.
 */
import { dummyBuffer, releaseScratch, scratchTexture } from "../scratch.ts";
import { GpuError } from "../errors.ts";
import { type Constants, defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { ceilDiv, Params } from "../util.ts";
import { type SharedTile, sharedWgsl } from "./matmul_shared.ts";
import { PACK_WGSL, type RegisterTile, registerWgsl, textureWgsl } from "./matmul_register.ts";

/** The three kernel designs. */
export type MatmulDesign = "shared" | "register" | "texture";

/** A design and its tile shape. `bk` is used by "shared" only. */
export interface MatmulConfig extends RegisterTile {
  /** Which kernel family. */
  design: MatmulDesign;
  /** K slice staged in workgroup memory ("shared" only). */
  bk?: number;
}

/** Shape and flags of one matmul call. */
export interface MatmulShape {
  /** Rows of op(A) and C. */
  m: number;
  /** Inner dimension. */
  k: number;
  /** Columns of op(B) and C. */
  n: number;
  /** Number of batches (default 1). */
  batch?: number;
  /** A is stored K×M. */
  transA?: boolean;
  /** B is stored N×K. */
  transB?: boolean;
  /** Elements between batches of A (default m·k; 0 = shared). */
  aStride?: number;
  /** Elements between batches of B (default k·n; 0 = shared). */
  bStride?: number;
  /** Sum every batch's product into a single M×N output. */
  sumBatch?: boolean;
  /** Add to the existing contents of the output instead of overwriting. */
  accumulate?: boolean;
}

/** Default tile per design (the autotune candidates include these). */
export const DEFAULT_MATMUL_CONFIGS: Readonly<Record<MatmulDesign, MatmulConfig>> = Object.freeze({
  shared: { design: "shared", tm: 4, tn: 4, wx: 16, wy: 16, bk: 16 },
  register: { design: "register", tm: 8, tn: 8, wx: 8, wy: 8 },
  texture: { design: "texture", tm: 8, tn: 16, wx: 8, wy: 4 },
});

/** Candidates an autotune trial may time, best guesses first. */
export const MATMUL_CANDIDATES: readonly MatmulConfig[] = Object.freeze([
  DEFAULT_MATMUL_CONFIGS.texture,
  { design: "texture", tm: 8, tn: 16, wx: 4, wy: 8 },
  { design: "texture", tm: 8, tn: 8, wx: 8, wy: 8 },
  { design: "texture", tm: 16, tn: 8, wx: 8, wy: 4 },
  DEFAULT_MATMUL_CONFIGS.register,
  { design: "register", tm: 4, tn: 8, wx: 8, wy: 8 },
  DEFAULT_MATMUL_CONFIGS.shared,
  { design: "shared", tm: 8, tn: 8, wx: 16, wy: 16, bk: 8 },
  { design: "shared", tm: 8, tn: 4, wx: 16, wy: 16, bk: 8 },
]);

/**
 * Below this many multiply-adds the texture design's two extra pack
 * dispatches cost more than its faster loop saves; `SMALL_MATMUL_CONFIG`
 * is used instead (64³ is faster buffer-fed, 128³ texture-fed).
 */
export const TEXTURE_MIN_MACS = 1 << 19;

/** The config for matmuls under `TEXTURE_MIN_MACS` when the texture design is chosen. */
export const SMALL_MATMUL_CONFIG: Readonly<MatmulConfig> = Object.freeze({
  design: "register",
  tm: 4,
  tn: 8,
  wx: 8,
  wy: 8,
});

/**
 * Products of at most this many output rows (decode steps: one token per
 * sequence) use `SMALL_M_MATMUL_CONFIG` whatever the tuned choice: a tuned
 * tile of 32-64 rows leaves all but one row of its invocations idle there.
 */
export const SMALL_M_ROWS = 8;

/**
 * A 4 × 16-column strip per invocation, 16 invocations in a row: at one row
 * every invocation works, where a tuned 32-64-row tile idles all but one
 * row (several times slower for decode's one-token products).
 */
export const SMALL_M_MATMUL_CONFIG: Readonly<MatmulConfig> = Object.freeze({
  design: "register",
  tm: 4,
  tn: 4,
  wx: 16,
  wy: 1,
});

/** Short name of a config, used as kernel name suffix, in caches and reports. */
export function configName(c: MatmulConfig): string {
  const base = `${c.design}_${c.tm}x${c.tn}_${c.wx}x${c.wy}`;
  return c.design === "shared" ? `${base}_k${c.bk ?? 16}` : base;
}

/** Whether WGSL read-only storage textures (the "texture" design) are available. */
export function textureDesignSupported(): boolean {
  const feats = (navigator.gpu as unknown as { wgslLanguageFeatures?: Set<string> })
    .wgslLanguageFeatures;
  return feats?.has("readonly_and_readwrite_storage_textures") ?? false;
}

const PACK = defineKernel("matmul.pack", () => PACK_WGSL);

// Small per-device buffers and textures the launchers reuse.
let textureLimitOverride: number | null = null;

/**
 * Makes the texture design split its work as if the device's
 * maxTextureDimension2D were `limit` (null: the real limit). For tests of
 * the splitting; `limit` must be a multiple of 4.
 */
export function setMatmulTextureLimit(limit: number | null): void {
  textureLimitOverride = limit;
}

function textureLimit(g: Gpu): number {
  return textureLimitOverride ?? g.device.limits.maxTextureDimension2D;
}

/**
 * Destroys the scratch textures of the texture design (they are otherwise
 * kept for reuse). Call only when no recorded work still uses them (after a
 * sync).
 */
export function releaseMatmulScratch(g: Gpu): void {
  releaseScratch(g, "matmul");
}

interface Resolved {
  m: number;
  k: number;
  n: number;
  batch: number;
  transA: boolean;
  transB: boolean;
  aStride: number;
  bStride: number;
  cStride: number;
  aOff: number;
  bOff: number;
  cOff: number;
  accumulate: boolean;
  bias: GPUBuffer | null;
  /** First element of bias used (texture-design column chunks). */
  biasOff: number;
  // Leading dims of the stored A, B and C (differ from k / m / n in the
  // chunks the texture design splits oversized products into).
  lda: number;
  ldb: number;
  ldc: number;
}

/** The buffers of one product: C = op(A)·op(B). */
interface MatmulIo {
  out: GPUBuffer;
  a: GPUBuffer;
  b: GPUBuffer;
}

function epilogueConstants(r: Resolved): Constants {
  return { HAS_BIAS: r.bias ? 1 : 0, ACCUMULATE: r.accumulate ? 1 : 0 };
}

function grid(
  g: Gpu,
  r: Resolved,
  rowsPerGroup: number,
  colsPerGroup: number,
): [number, number, number] {
  const x = ceilDiv(r.n, colsPerGroup);
  const y = ceilDiv(r.m, rowsPerGroup);
  const max = g.device.limits.maxComputeWorkgroupsPerDimension;
  if (x > max || y > max) {
    throw new GpuError(
      `matmul: ${r.m}x${r.n} output needs a ${x}x${y} grid, over the device limit of ${max}`,
    );
  }
  return [x, y, r.batch];
}

function mmParams(r: Resolved): Params {
  return new Params().u32(r.m).u32(r.k).u32(r.n).u32(r.aStride).u32(r.bStride).u32(r.cStride)
    .u32(r.aOff).u32(r.bOff).u32(r.cOff);
}

/**
 * Records a buffer-fed design (shared-memory or register tiles). The
 * register tile reads vec4s of A or B where every vec4 starts at an index
 * divisible by 4, a variant of its own.
 */
function launchBufferFed(g: Gpu, c: MatmulConfig, io: MatmulIo, r: Resolved): void {
  const div4 = (...xs: number[]) => xs.every((x) => x % 4 === 0);
  const reg = c.design === "register";
  const vecA = reg &&
    (r.transA ? div4(r.m, c.tm, r.aStride, r.aOff) : div4(r.k, r.aStride, r.aOff));
  const vecB = reg && (r.transB ? div4(r.k, r.bStride, r.bOff) : div4(r.n, r.bStride, r.bOff));
  const name = `matmul.${configName(c)}${vecA ? "_va" : ""}${vecB ? "_vb" : ""}`;
  const tile: SharedTile = { tm: c.tm, tn: c.tn, wx: c.wx, wy: c.wy, bk: c.bk ?? 16 };
  g.recorder.dispatch({
    kernel: defineKernel(name, () => reg ? registerWgsl(c, vecA, vecB) : sharedWgsl(tile)),
    constants: { TRANS_A: r.transA ? 1 : 0, TRANS_B: r.transB ? 1 : 0, ...epilogueConstants(r) },
    buffers: [io.a, io.b, r.bias ?? dummyBuffer(g), io.out],
    params: mmParams(r),
    workgroups: grid(g, r, c.tm * c.wy, c.tn * c.wx),
  });
}

/** Packs a (rows×cols per batch) strided view of x into texture rows z·rowsPad + r. */
function pack(
  g: Gpu,
  dst: GPUTextureView,
  x: GPUBuffer,
  p: {
    rows: number;
    cols: number;
    rowsPad: number;
    sr: number;
    se: number;
    sz: number;
    off: number;
    batches: number;
  },
): void {
  const width = ceilDiv(p.cols, 4);
  g.recorder.dispatch({
    kernel: PACK,
    buffers: [x, dst],
    params: new Params().u32(p.rows).u32(p.cols).u32(p.rowsPad).u32(width).u32(p.sr).u32(p.se)
      .u32(p.sz).u32(p.off),
    workgroups: [ceilDiv(width, 16), ceilDiv(p.rowsPad, 16), p.batches],
  });
}

/**
 * Records the texture design, splitting the product where a texture would
 * pass the device's maxTextureDimension2D: batches into groups, then rows
 * of C, columns of C, and K (later K slices accumulate); each piece that
 * fits is packed and multiplied by `textureProduct`.
 */
function launchTexture(g: Gpu, c: MatmulConfig, io: MatmulIo, r: Resolved): void {
  const limit = textureLimit(g);
  const kp = ceilDiv(r.k, 4) * 4;
  const sharedB = r.bStride === 0;
  if (r.batch > 1 && (r.batch * r.m > limit || (!sharedB && r.batch * kp > limit))) {
    const per = Math.max(
      1,
      Math.min(Math.floor(limit / r.m), sharedB ? Infinity : Math.floor(limit / kp)),
    );
    for (let z0 = 0; z0 < r.batch; z0 += per) {
      launchTexture(g, c, io, {
        ...r,
        batch: Math.min(per, r.batch - z0),
        aOff: r.aOff + z0 * r.aStride,
        bOff: r.bOff + z0 * r.bStride,
        cOff: r.cOff + z0 * r.cStride,
      });
    }
    return;
  }
  if (r.m > limit) {
    for (let m0 = 0; m0 < r.m; m0 += limit) {
      launchTexture(g, c, io, {
        ...r,
        m: Math.min(limit, r.m - m0),
        aOff: r.aOff + (r.transA ? m0 : m0 * r.lda),
        cOff: r.cOff + m0 * r.ldc,
      });
    }
    return;
  }
  if (ceilDiv(r.n, 4) > limit) {
    const nc = 4 * limit;
    for (let n0 = 0; n0 < r.n; n0 += nc) {
      launchTexture(g, c, io, {
        ...r,
        n: Math.min(nc, r.n - n0),
        bOff: r.bOff + (r.transB ? n0 * r.ldb : n0),
        cOff: r.cOff + n0,
        biasOff: r.biasOff + n0,
      });
    }
    return;
  }
  if (kp > limit) {
    for (let k0 = 0; k0 < r.k; k0 += limit) {
      launchTexture(g, c, io, {
        ...r,
        k: Math.min(limit, r.k - k0),
        aOff: r.aOff + (r.transA ? k0 * r.lda : k0),
        bOff: r.bOff + (r.transB ? k0 : k0 * r.ldb),
        accumulate: r.accumulate || k0 > 0,
        bias: k0 === 0 ? r.bias : null,
      });
    }
    return;
  }
  textureProduct(g, c, io, r);
}

/** Packs A and B into scratch textures and records the texture-design product. */
function textureProduct(g: Gpu, c: MatmulConfig, io: MatmulIo, r: Resolved): void {
  const kp = ceilDiv(r.k, 4) * 4;
  const sharedB = r.bStride === 0;
  const bBatches = sharedB ? 1 : r.batch;
  const at = scratchTexture(g, "matmul", "a", ceilDiv(r.k, 4), r.batch * r.m);
  const bt = scratchTexture(g, "matmul", "b", ceilDiv(r.n, 4), bBatches * kp);
  pack(g, at, io.a, {
    rows: r.m,
    cols: r.k,
    rowsPad: r.m,
    sr: r.transA ? 1 : r.lda,
    se: r.transA ? r.lda : 1,
    sz: r.aStride,
    off: r.aOff,
    batches: r.batch,
  });
  pack(g, bt, io.b, {
    rows: r.k,
    cols: r.n,
    rowsPad: kp,
    sr: r.transB ? 1 : r.ldb,
    se: r.transB ? r.ldb : 1,
    sz: r.bStride,
    off: r.bOff,
    batches: bBatches,
  });
  const name = `matmul.${configName(c)}`;
  g.recorder.dispatch({
    kernel: defineKernel(name, () => textureWgsl(c)),
    constants: epilogueConstants(r),
    buffers: [at, bt, r.bias ?? dummyBuffer(g), io.out],
    params: new Params().u32(r.m).u32(r.k).u32(r.n).u32(sharedB ? 0 : kp).u32(r.cStride)
      .u32(r.cOff).u32(r.ldc).u32(r.biasOff),
    workgroups: grid(g, r, c.tm * c.wy, c.tn * c.wx),
  });
}

function launch(g: Gpu, c: MatmulConfig, io: MatmulIo, r: Resolved): void {
  // The texture design needs K > 0 and read-only storage textures in WGSL.
  if (c.design === "texture" && (r.k === 0 || !textureDesignSupported())) {
    c = DEFAULT_MATMUL_CONFIGS.register;
  }
  if (c.design === "texture") launchTexture(g, c, io, r);
  else launchBufferFed(g, c, io, r);
}

/**
 * Records C = op(A)·op(B) (+ bias) (+ C) into `out`, with the kernel design
 * and tile of `config`. Buffers hold f32 data, row-major per batch; `bias`
 * (length n) may be null. Falls back to the register design where the
 * texture design cannot run (no read-only storage textures in WGSL, K = 0).
 */
export function matmulKernel(
  g: Gpu,
  out: GPUBuffer,
  a: GPUBuffer,
  b: GPUBuffer,
  bias: GPUBuffer | null,
  shape: MatmulShape,
  config: MatmulConfig,
): void {
  const io = { out, a, b };
  const { m, k, n } = shape;
  const batch = shape.batch ?? 1;
  if (m === 0 || n === 0) return;
  const base: Resolved = {
    m,
    k,
    n,
    batch,
    transA: shape.transA ?? false,
    transB: shape.transB ?? false,
    aStride: shape.aStride ?? m * k,
    bStride: shape.bStride ?? k * n,
    cStride: m * n,
    aOff: 0,
    bOff: 0,
    cOff: 0,
    accumulate: shape.accumulate ?? false,
    bias,
    biasOff: 0,
    lda: shape.transA ? m : k,
    ldb: shape.transB ? k : n,
    ldc: n,
  };
  if (batch === 0 && !shape.sumBatch) return;
  if (shape.sumBatch) {
    // One dispatch per batch, each adding into the single output; an empty
    // sum is the bias (or zero, or the output unchanged when accumulating).
    if (batch === 0) {
      launch(g, config, io, { ...base, batch: 1, k: 0 });
      return;
    }
    for (let z = 0; z < batch; z++) {
      launch(g, config, io, {
        ...base,
        batch: 1,
        cStride: 0,
        aOff: z * base.aStride,
        bOff: z * base.bStride,
        accumulate: base.accumulate || z > 0,
        bias: z === 0 ? bias : null,
      });
    }
    return;
  }
  // The grid's z dimension is limited too: split huge batches.
  const maxZ = g.device.limits.maxComputeWorkgroupsPerDimension;
  for (let z0 = 0; z0 < batch; z0 += maxZ) {
    launch(g, config, io, {
      ...base,
      batch: Math.min(maxZ, batch - z0),
      aOff: z0 * base.aStride,
      bOff: z0 * base.bStride,
      cOff: z0 * base.cStride,
    });
  }
}
