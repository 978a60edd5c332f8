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

/** WGSL of the workgroup-memory tiled kernel for one tile shape. */
export function sharedWgsl(t: SharedTile): string {
  const { tm, tn, wx, wy, bk } = t;
  const bm = tm * wy;
  const bn = tn * wx;
  const threads = wx * wy;
  return /* wgsl */ `
override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;
struct P { m: u32, k: u32, n: u32, sa: u32, sb: u32, sc: u32, oa: u32, ob: u32, oc: u32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(1) @binding(0) var<uniform> p: P;

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
    for (var e = li; e < ${bm * bk}u; e += ${threads}u) {
      var m: u32; var kk: u32;
      if (TRANS_A) { kk = e / ${bm}u; m = e % ${bm}u; } else { m = e / ${bk}u; kk = e % ${bk}u; }
      let gm = tileRow + m;
      let gk = k0 + kk;
      var v = 0.0;
      if (gm < p.m && gk < p.k) {
        v = a[select(aBase + gm * p.k + gk, aBase + gk * p.m + gm, TRANS_A)];
      }
      As[kk * ${bm}u + m] = v;
    }
    for (var e = li; e < ${bn * bk}u; e += ${threads}u) {
      var n: u32; var kk: u32;
      if (TRANS_B) { n = e / ${bk}u; kk = e % ${bk}u; } else { kk = e / ${bn}u; n = e % ${bn}u; }
      let gn = tileCol + n;
      let gk = k0 + kk;
      var v = 0.0;
      if (gn < p.n && gk < p.k) {
        v = b[select(bBase + gk * p.n + gn, bBase + gn * p.k + gk, TRANS_B)];
      }
      Bs[kk * ${bn}u + n] = v;
    }
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
