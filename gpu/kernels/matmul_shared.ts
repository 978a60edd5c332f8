/**
 * Workgroup-memory tiled matmul: the design for real GPUs.
 *
 *   C[z] (M×N) = op(A[z]) · op(B[z]) (+ bias[N]) (+ C[z] when ACCUMULATE)
 *
 * A workgroup of WX×WY invocations owns a BM×BN tile of C (BM = TM·WY,
 * BN = TN·WX). For each BK-deep slice of K it stages op(A)[BM×BK] and
 * op(B)[BK×BN] in workgroup memory (k-major, zero-filled past M, N, K; the
 * global reads run along the operand's contiguous axis, so they coalesce
 * whatever TRANS_A / TRANS_B say), then each invocation accumulates a TM×TN
 * register tile. Invocation (x, y) owns rows y + i·WY and columns x + j·WX:
 * neighbouring invocations read neighbouring workgroup-memory words (no bank
 * conflicts) and store neighbouring columns of C.
 *
 * Bindings (group 0): A, B, bias (a dummy buffer when HAS_BIAS is false),
 * C (read_write). Group 1: params (m, k, n, batch strides sa/sb/sc, element
 * offsets oa/ob/oc). Launch: grid (ceil(N / BN), ceil(M / BM), batch).
 */
import { bufferFedHeader } from "./matmul_register.ts";

/** Tile shape of the workgroup-memory kernel. */
export interface SharedTile {
  /** Rows of C per invocation. */
  tm: number;
  /** Columns of C per invocation. */
  tn: number;
  /** Workgroup size along N. */
  wx: number;
  /** Workgroup size along M. */
  wy: number;
  /** Depth of the K slice staged per step. */
  bk: number;
}

/** Where `stageWgsl` copies one operand's K slice from. */
interface Stage {
  /** The operand, "A" or "B" (read from binding a or b, staged into As or Bs). */
  x: string;
  /** WGSL condition: the operand is stored K-contiguous (rows × K). */
  kc: string;
  /** Rows (of M or N) of the tile. */
  span: number;
  /** Depth of the K slice. */
  bk: number;
  /** Invocations of the workgroup, which share the copy. */
  threads: number;
  /** First row of the tile. */
  start: string;
  /** Rows of the operand (M or N). */
  limit: string;
  /** Element offset of the operand's batch. */
  base: string;
}

// Copies the span × bk slice of A or B at k0 into workgroup memory
// (Xs[kk·span + r]), zero past the matrix; consecutive invocations read
// consecutive elements of the stored layout.
function stageWgsl(s: Stage): string {
  const src = s.x.toLowerCase();
  return /* wgsl */ `for (var e = li; e < ${s.span * s.bk}u; e += ${s.threads}u) {
      var r: u32; var kk: u32;
      if (${s.kc}) { r = e / ${s.bk}u; kk = e % ${s.bk}u; }
      else { kk = e / ${s.span}u; r = e % ${s.span}u; }
      let gr = ${s.start} + r;
      let gk = k0 + kk;
      var v = 0.0;
      if (gr < ${s.limit} && gk < p.k) {
        v = ${src}[select(${s.base} + gk * ${s.limit} + gr, ${s.base} + gr * p.k + gk, ${s.kc})];
      }
      ${s.x}s[kk * ${s.span}u + r] = v;
    }`;
}

/**
 * WGSL of the workgroup-memory tiled kernel for one tile shape. Launch:
 * workgroup (wx, wy), each workgroup a (tm·wy) × (tn·wx) tile of C, staged
 * through workgroup memory bk deep; grid (⌈n / (tn·wx)⌉, ⌈m / (tm·wy)⌉, batch).
 */
export function sharedWgsl(t: SharedTile): string {
  const { tm, tn, wx, wy, bk } = t;
  const bm = tm * wy;
  const bn = tn * wx;
  const threads = wx * wy;
  const stage = (x: string, kc: string, span: number, start: string, limit: string, base: string) =>
    stageWgsl({ x, kc, span, bk, threads, start, limit, base });
  return /* wgsl */ `${bufferFedHeader("f32", "f32")}

var<workgroup> As: array<f32, ${bk * bm}>;
var<workgroup> Bs: array<f32, ${bk * bn}>;

@compute @workgroup_size(${wx}, ${wy})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let tileRow = wid.y * ${bm}u;
  let tileCol = wid.x * ${bn}u;
  let aBase = p.oa + wid.z * p.sa;
  let bBase = p.ob + wid.z * p.sb;
  let cBase = p.oc + wid.z * p.sc;
  var acc: array<array<f32, ${tn}>, ${tm}>;
  for (var k0 = 0u; k0 < p.k; k0 += ${bk}u) {
    ${stage("A", "!TRANS_A", bm, "tileRow", "p.m", "aBase")}
    ${stage("B", "TRANS_B", bn, "tileCol", "p.n", "bBase")}
    workgroupBarrier();
    for (var kk = 0u; kk < ${bk}u; kk++) {
      var ar: array<f32, ${tm}>;
      var br: array<f32, ${tn}>;
      for (var i = 0u; i < ${tm}u; i++) { ar[i] = As[kk * ${bm}u + lid.y + i * ${wy}u]; }
      for (var j = 0u; j < ${tn}u; j++) { br[j] = Bs[kk * ${bn}u + lid.x + j * ${wx}u]; }
      for (var i = 0u; i < ${tm}u; i++) {
        for (var j = 0u; j < ${tn}u; j++) { acc[i][j] = fma(ar[i], br[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < ${tm}u; i++) {
    let r = tileRow + lid.y + i * ${wy}u;
    if (r >= p.m) { break; }
    for (var j = 0u; j < ${tn}u; j++) {
      let col = tileCol + lid.x + j * ${wx}u;
      if (col < p.n) {
        let ci = cBase + r * p.n + col;
        var v = acc[i][j];
        if (HAS_BIAS) { v += bias[col]; }
        if (ACCUMULATE) { v += c[ci]; }
        c[ci] = v;
      }
    }
  }
}
`;
}
