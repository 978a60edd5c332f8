/**
 * Causal multi-head scaled-dot-product attention, read straight from the
 * fused projection output (nanoGPT layout, no transposes).
 *
 * Layouts (row-major, f32):
 *   qkv  (B, T, 3C): q = [..., 0:C], k = [..., C:2C], v = [..., 2C:3C];
 *                    head h owns columns h·hs .. (h+1)·hs of each (hs = C/H)
 *   y    (B, T, C):  heads merged, y[b, t, h·hs + d]
 *   P    (B, H, T, T): softmax probabilities, saved for backward; entries
 *                    above the diagonal (t' > t) are exact zeros
 *   dS   (B, H, T, T): backward temporary, zeros above the diagonal too
 *   dqkv (B, T, 3C): same layout as qkv
 *
 * Math (scale = 1/√hs, causal: only t' ≤ t):
 *   forward   S = Q·Kᵀ·scale,  P = softmax_row(S),  Y = P·V
 *   backward  dP = dY·Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),
 *             dQ = dS·K·scale,  dK = dSᵀ·Q·scale,  dV = Pᵀ·dY
 *
 * Kernels. On llvmpipe a "thread" is one SIMD lane of a CPU core, every
 * storage load in a loop costs a per-lane gather (~10 cycles an element,
 * whatever the address pattern), and workgroup memory is slower still. So
 * the six products are one register-tiled kernel: each thread owns a 4×4
 * output tile and per step of the reduction loads 4 + 4 values for 16 FMAs
 * (a thread per output would load 2 per FMA). Operands are addressed by
 * strides, so q, k, v, dY and dqkv are read and written in place:
 *
 *   attention.bmm    C[bh] = α · A[bh] · B[bh], one thread per 4×4 tile of
 *                    C per (b, h): B·H·⌈M/4⌉·⌈N/4⌉ threads, 64 per group.
 *                    MODE (override) gives the causal shape:
 *                      0  output (T, T): tiles wholly above the diagonal are
 *                         skipped (their entries are zeroed by the row kernels)
 *                      1  reduce k < min(K, m0 + 4): A's row m is zero past m
 *                      2  reduce k ≥ m0: A(m, k) = X[k, m] is zero for k < m
 *                    Jobs (M × N, reduction K, mode):
 *                      S  = Q·Kᵀ·scale   T × T,  hs, 0   (into P's buffer)
 *                      Y  = P·V          T × hs, T,  1
 *                      dP = dY·Vᵀ        T × T,  hs, 0   (into dS's buffer)
 *                      dQ = dS·K·scale   T × hs, T,  1
 *                      dK = dSᵀ·Q·scale  T × hs, T,  2
 *                      dV = Pᵀ·dY        T × hs, T,  2
 *   attention.softmax  P row (b, h, t) = softmax(S[.., 0..t]), zeros past t,
 *                    in place: one thread per row, B·H·T threads, 64 per group.
 *   attention.dscore dS row = P ⊙ (dP − Σ dP ⊙ P), zeros past t, in place
 *                    over dP: one thread per row, B·H·T threads, 64 per group.
 *
 * Tiles whose rows or columns run past M or N load clamped (valid)
 * addresses and store only in range. Threads are numbered
 * i = gid.y · nx · 64 + gid.x, nx = num_workgroups.x (2-D grid past 65535 groups, see grid1d).
 * Binding order: read-only inputs, then the output; params in group 1.
 * Work: O(B·H·T²·hs) per product; memory: P and dS are B·H·T² floats each,
 * which bounds T (checked against the binding size limit).
 */
import { GpuError } from "../errors.ts";
import { defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { ceilDiv, Params } from "../util.ts";
import { bindings, flatEntry } from "../wgsl.ts";

const WG = 64;
/** Rows and columns of the output tile of one attention.bmm thread. */
export const ATTENTION_TILE = 8;
const TILE = ATTENTION_TILE;

/** Dimensions of an attention call. */
export interface AttentionDims {
  /** Batch size. */
  B: number;
  /** Sequence length. */
  T: number;
  /** Model width (qkv has 3C columns). */
  C: number;
  /** Number of heads (C is a multiple of it). */
  H: number;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

const TILE_IDS = range(TILE);
const PAIRS = TILE_IDS.flatMap((r) => TILE_IDS.map((c) => [r, c]));

/** WGSL of attention.bmm (the 4×4 tile is unrolled by hand: no private arrays). */
export const ATTENTION_BMM_WGSL = /* wgsl */ `
override MODE: u32 = 0u;
struct P {
  M: u32, N: u32, K: u32, H: u32,
  mTiles: u32, nTiles: u32, threads: u32,
  aOff: u32, aB: u32, aH: u32, aM: u32, aK: u32,
  bOff: u32, bB: u32, bH: u32, bK: u32, bN: u32,
  cOff: u32, cB: u32, cH: u32, cM: u32, cN: u32,
  alpha: f32,
}
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(1) @binding(0) var<uniform> p: P;

${flatEntry(WG, { bound: "p.threads" })}
  let nt = i % p.nTiles;
  let rest = i / p.nTiles;
  let m0 = (rest % p.mTiles) * ${TILE}u;
  let n0 = nt * ${TILE}u;
  let bh = rest / p.mTiles;
  let hh = bh % p.H;
  let bb = bh / p.H;
  if (MODE == 0u && n0 > m0 + ${TILE - 1}u) { return; }
  var kLo = 0u;
  var kHi = p.K;
  if (MODE == 1u) { kHi = min(p.K, m0 + ${TILE}u); }
  if (MODE == 2u) { kLo = m0; }
  let aBase = p.aOff + bb * p.aB + hh * p.aH;
  let bBase = p.bOff + bb * p.bB + hh * p.bH;
${TILE_IDS.map((r) => `  let ar${r} = aBase + min(m0 + ${r}u, p.M - 1u) * p.aM;`).join("\n")}
${TILE_IDS.map((n) => `  let bc${n} = bBase + min(n0 + ${n}u, p.N - 1u) * p.bN;`).join("\n")}
${PAIRS.map(([r, n]) => `  var acc${r}${n} = 0.0;`).join("\n")}
  for (var k = kLo; k < kHi; k++) {
    let ak = k * p.aK;
    let bk = k * p.bK;
${TILE_IDS.map((r) => `    let a${r} = a[ar${r} + ak];`).join("\n")}
${TILE_IDS.map((n) => `    let b${n} = b[bc${n} + bk];`).join("\n")}
${PAIRS.map(([r, n]) => `    acc${r}${n} += a${r} * b${n};`).join("\n")}
  }
  let cBase = p.cOff + bb * p.cB + hh * p.cH;
${
  PAIRS.map(([r, n]) =>
    `  if (m0 + ${r}u < p.M && n0 + ${n}u < p.N) { ` +
    `c[cBase + (m0 + ${r}u) * p.cM + (n0 + ${n}u) * p.cN] = p.alpha * acc${r}${n}; }`
  ).join("\n")
}
}
`;

const ROW_PARAMS = /* wgsl */ `
struct P { rows: u32, T: u32 }
@group(1) @binding(0) var<uniform> p: P;
`;

/** WGSL of attention.softmax: the causal row softmax, in place over the scores. */
export const ATTENTION_SOFTMAX_WGSL = /* wgsl */ `
${ROW_PARAMS}
${bindings`
  write  s: array<f32>
`}

${flatEntry(WG, { id: "r", bound: "p.rows" })}
  let t = r % p.T;
  let o = r * p.T;
  var m = s[o];
  for (var j = 1u; j <= t; j++) { m = max(m, s[o + j]); }
  var sum = 0.0;
  for (var j = 0u; j <= t; j++) {
    let e = exp(s[o + j] - m);
    s[o + j] = e;
    sum += e;
  }
  let inv = 1.0 / sum;
  for (var j = 0u; j <= t; j++) { s[o + j] *= inv; }
  for (var j = t + 1u; j < p.T; j++) { s[o + j] = 0.0; }
}
`;

/** WGSL of attention.dscore: dS = P ⊙ (dP − rowsum(dP ⊙ P)), in place over dP. */
export const ATTENTION_DSCORE_WGSL = /* wgsl */ `
${ROW_PARAMS}
${bindings`
  read   probs: array<f32>
  write  ds: array<f32>
`}

${flatEntry(WG, { id: "r", bound: "p.rows" })}
  let t = r % p.T;
  let o = r * p.T;
  var rowDot = 0.0;
  for (var j = 0u; j <= t; j++) { rowDot += ds[o + j] * probs[o + j]; }
  for (var j = 0u; j <= t; j++) { ds[o + j] = probs[o + j] * (ds[o + j] - rowDot); }
  for (var j = t + 1u; j < p.T; j++) { ds[o + j] = 0.0; }
}
`;

const BMM = defineKernel("attention.bmm", () => ATTENTION_BMM_WGSL);
const SOFTMAX = defineKernel("attention.softmax", () => ATTENTION_SOFTMAX_WGSL);
const DSCORE = defineKernel("attention.dscore", () => ATTENTION_DSCORE_WGSL);

/** Where an operand of attention.bmm lives: offset, then strides per b, h, row, column. */
interface Operand {
  buf: GPUBuffer;
  off: number;
  sB: number;
  sH: number;
  sRow: number;
  sCol: number;
}

/** Bytes of one (B, H, T, T) score tensor. */
export function attentionScoreBytes(d: AttentionDims): number {
  return d.B * d.H * d.T * d.T * 4;
}

function checkLimits(g: Gpu, d: AttentionDims): void {
  const bytes = attentionScoreBytes(d);
  const limit = g.device.limits.maxStorageBufferBindingSize;
  if (bytes > limit) {
    throw new GpuError(
      `attention: scores (B, H, T, T) = (${d.B}, ${d.H}, ${d.T}, ${d.T}) need ${bytes} bytes, ` +
        `over the device's binding limit of ${limit}: use a smaller batch or context`,
    );
  }
}

/** One attention.bmm: (M, K)·(K, N) per (b, h), scaled by alpha; MODE as the header. */
interface BmmShape {
  d: AttentionDims;
  mode: 0 | 1 | 2;
  M: number;
  N: number;
  K: number;
  alpha: number;
}

/** c = alpha · a · b per (b, h): a is (M, K), b is (K, N), c is (M, N). */
function bmm(g: Gpu, c: Operand, [a, b]: [Operand, Operand], s: BmmShape): void {
  const { d, M, N, K } = s;
  const mTiles = ceilDiv(M, TILE);
  const nTiles = ceilDiv(N, TILE);
  const threads = d.B * d.H * mTiles * nTiles;
  const params = new Params().u32(M).u32(N).u32(K).u32(d.H)
    .u32(mTiles).u32(nTiles).u32(threads);
  for (const o of [a, b, c]) params.u32(o.off).u32(o.sB).u32(o.sH).u32(o.sRow).u32(o.sCol);
  params.f32(s.alpha);
  g.recorder.dispatchFlat(threads, WG, {
    kernel: BMM,
    constants: { MODE: s.mode },
    buffers: [a.buf, b.buf, c.buf],
    params,
  });
}

function rows(g: Gpu, kernel: typeof SOFTMAX, buffers: GPUBuffer[], d: AttentionDims): void {
  const n = d.B * d.H * d.T;
  g.recorder.dispatchFlat(n, WG, {
    kernel,
    buffers,
    params: new Params().u32(n).u32(d.T),
  });
}

// Checks the limits, then the operands of one call: q, k, v (and their
// gradients) inside a (B, T, 3C) buffer, and the two product shapes.
function views(g: Gpu, d: AttentionDims) {
  checkLimits(g, d);
  const { T, C, H } = d;
  const hs = C / H;
  const qkvPart = (buf: GPUBuffer, part: number): Operand => ({
    buf,
    off: part * C,
    sB: T * 3 * C,
    sH: hs,
    sRow: 3 * C,
    sCol: 1,
  });
  // (T, hs) rows of the transposed view: element (d, t) of part`ᵀ.
  const transposed = (o: Operand): Operand => ({ ...o, sRow: o.sCol, sCol: o.sRow });
  const scores = (buf: GPUBuffer): Operand => ({
    buf,
    off: 0,
    sB: H * T * T,
    sH: T * T,
    sRow: T,
    sCol: 1,
  });
  const merged = (buf: GPUBuffer): Operand => ({
    buf,
    off: 0,
    sB: T * C,
    sH: hs,
    sRow: C,
    sCol: 1,
  });
  const scoreShape = { d, M: T, N: T, K: hs }; // (T, hs)·(hs, T)
  const valueShape = { d, M: T, N: hs, K: T }; // (T, T)·(T, hs)
  return { hs, qkvPart, transposed, scores, merged, scoreShape, valueShape };
}

/**
 * Forward: y (B, T, C) and the probabilities P (B, H, T, T) from qkv (B, T, 3C).
 * Three dispatches: bmm (S), softmax, bmm (Y).
 */
export function attentionForward(
  g: Gpu,
  y: GPUBuffer,
  probs: GPUBuffer,
  qkv: GPUBuffer,
  d: AttentionDims,
): void {
  if (d.B * d.T * d.C === 0) return;
  const { hs, qkvPart, transposed, scores, merged, scoreShape, valueShape } = views(g, d);
  const P = scores(probs);
  const [q, k, v] = [0, 1, 2].map((part) => qkvPart(qkv, part));
  bmm(g, P, [q, transposed(k)], { ...scoreShape, mode: 0, alpha: 1 / Math.sqrt(hs) });
  rows(g, SOFTMAX, [probs], d);
  bmm(g, merged(y), [P, v], { ...valueShape, mode: 1, alpha: 1 });
}

/**
 * Backward: dqkv (B, T, 3C) from dy (B, T, C), qkv and the saved P. Five
 * dispatches (bmm dP, dscore, bmm dQ, dK, dV) and a pooled dS temporary.
 */
export function attentionBackward(
  g: Gpu,
  dqkv: GPUBuffer,
  dy: GPUBuffer,
  qkv: GPUBuffer,
  probs: GPUBuffer,
  d: AttentionDims,
): void {
  if (d.B * d.T * d.C === 0) return;
  const { hs, qkvPart, transposed, scores, merged, scoreShape, valueShape } = views(g, d);
  const scale = 1 / Math.sqrt(hs);
  const dsBuf = g.pool.acquire(attentionScoreBytes(d), "attention.ds");
  const dS = scores(dsBuf);
  const P = scores(probs);
  const dY = merged(dy);
  const [q, k, v] = [0, 1, 2].map((part) => qkvPart(qkv, part));
  const [dq, dk, dv] = [0, 1, 2].map((part) => qkvPart(dqkv, part));
  bmm(g, dS, [dY, transposed(v)], { ...scoreShape, mode: 0, alpha: 1 });
  rows(g, DSCORE, [probs, dsBuf], d);
  bmm(g, dq, [dS, k], { ...valueShape, mode: 1, alpha: scale });
  bmm(g, dk, [transposed(dS), q], { ...valueShape, mode: 2, alpha: scale });
  bmm(g, dv, [transposed(P), dY], { ...valueShape, mode: 2, alpha: 1 });
  g.pool.release(dsBuf);
}
