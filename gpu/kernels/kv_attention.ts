/**
 * Attention against a KV cache, for autoregressive decoding: one new query
 * row per sequence attends over the keys and values of every earlier
 * position, which are kept instead of recomputed.
 *
 * Layouts (row-major, f32; hd = C / H):
 *   qkv     (B, T, 3C) in the prefill, (B, 1, 3C) in a decode step: the
 *           fused c_attn output, q = [..., 0:C], k = [..., C:2C],
 *           v = [..., 2C:3C], head h in columns h·hd .. (h+1)·hd of each
 *   K, V    (B, H, ctx, hd) per layer: row (b, h, j) holds position j's key
 *           (value) of head h, so one head's history is contiguous
 *   scores  (B, H, ctx): the new query's scaled scores, valid for j ≤ t
 *   y       (B, C): heads merged, y[b, h·hd + d]
 *
 * Math (scale = 1/√hd, t = the new token's position, causal: j ≤ t):
 *   s_j = scale · q·k_j,  p_j = softmax(s_0..s_t)_j,  y = Σ_j p_j · v_j
 * the same formula as core/ops/attention.ts's last row, computed in the same
 * order (max, exp, sum, scale by 1/sum, then Σ p_j v_j), so decode logits
 * match a full forward to f32 rounding.
 *
 * Kernels (one thread each of what is listed, 64 per group, 2-D grid past
 * 65535 groups: i = gid.y · nx · 64 + gid.x, nx = num_workgroups.x):
 *   kv_attention.fill    B·T·C threads: copies the prefill's k and v into
 *                        the cache at positions 0..T-1.
 *                        Bindings: qkv (read), K, V.
 *   kv_attention.scores  B·H·(t+1) threads, one per (b, h, j): s_j. Thread
 *                        j = t reads k_t from qkv and also appends k_t and v_t
 *                        to the cache (no separate append dispatch).
 *                        Bindings: qkv (read), K, V, scores.
 *   kv_attention.mix     B·H·hd threads, one per (b, h, d): each recomputes
 *                        the row's max and sum (t+1 values: cheaper than a
 *                        third dispatch on llvmpipe) and writes y.
 *                        Bindings: scores, V (read), y.
 * Params are uniforms recorded per dispatch (t among them), so a whole
 * generation is recorded with no read-back.
 */
import { GpuError } from "../errors.ts";
import { defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { flatGrid, Params } from "../util.ts";
import { bindings, flatEntry } from "../wgsl.ts";

const WG = 64;

/** Shape of one layer's KV cache. */
export interface KvDims {
  /** Sequences. */
  B: number;
  /** Heads. */
  H: number;
  /** Model width (qkv has 3C columns); hd = C / H. */
  C: number;
  /** Positions the cache holds (the model's context). */
  ctx: number;
}

// Params of every kv_attention kernel: threads, positions (T to fill, L to
// attend over), C, hd, H, ctx.
const KV_PARAMS = "n: u32, L: u32, C: u32, hd: u32, H: u32, ctx: u32";

/** WGSL of kv_attention.fill. */
export const KV_FILL_WGSL = /* wgsl */ `
${bindings`
  params ${KV_PARAMS}
  read   qkv: array<f32>
  write  kc: array<f32>, vc: array<f32>
`}

${flatEntry(WG)}
  let c = i % p.C;
  let bt = i / p.C;
  let t = bt % p.L;
  let b = bt / p.L;
  let h = c / p.hd;
  let dst = ((b * p.H + h) * p.ctx + t) * p.hd + c % p.hd;
  let src = bt * 3u * p.C + c;
  kc[dst] = qkv[src + p.C];
  vc[dst] = qkv[src + 2u * p.C];
}
`;

/** WGSL of kv_attention.scores (appends position t as it goes). */
export const KV_SCORES_WGSL = /* wgsl */ `
${bindings`
  params ${KV_PARAMS}
  params scale: f32
  read   qkv: array<f32>
  write  kc: array<f32>, vc: array<f32>, s: array<f32>
`}

${flatEntry(WG)}
  let j = i % p.L;
  let bh = i / p.L;
  let h = bh % p.H;
  let b = bh / p.H;
  let q = b * 3u * p.C + h * p.hd;
  let row = (bh * p.ctx + j) * p.hd;
  var acc = 0.0;
  if (j + 1u == p.L) {
    for (var d = 0u; d < p.hd; d++) {
      let k = qkv[q + p.C + d];
      kc[row + d] = k;
      vc[row + d] = qkv[q + 2u * p.C + d];
      acc += qkv[q + d] * k;
    }
  } else {
    for (var d = 0u; d < p.hd; d++) { acc += qkv[q + d] * kc[row + d]; }
  }
  s[bh * p.ctx + j] = p.scale * acc;
}
`;

/** WGSL of kv_attention.mix: softmax over the scores, then the weighted sum of values. */
export const KV_MIX_WGSL = /* wgsl */ `
${bindings`
  params ${KV_PARAMS}
  read   s: array<f32>, vc: array<f32>
  write  y: array<f32>
`}

${flatEntry(WG)}
  let d = i % p.hd;
  let bh = i / p.hd;
  let h = bh % p.H;
  let b = bh / p.H;
  let o = bh * p.ctx;
  var m = s[o];
  for (var j = 1u; j < p.L; j++) { m = max(m, s[o + j]); }
  var sum = 0.0;
  for (var j = 0u; j < p.L; j++) { sum += exp(s[o + j] - m); }
  let inv = 1.0 / sum;
  var acc = 0.0;
  for (var j = 0u; j < p.L; j++) {
    acc += (exp(s[o + j] - m) * inv) * vc[(o + j) * p.hd + d];
  }
  y[b * p.C + h * p.hd + d] = acc;
}
`;

const FILL = defineKernel("kv_attention.fill", () => KV_FILL_WGSL);
const SCORES = defineKernel("kv_attention.scores", () => KV_SCORES_WGSL);
const MIX = defineKernel("kv_attention.mix", () => KV_MIX_WGSL);

/** Bytes of one K (or V) cache buffer. */
export function kvCacheBytes(d: KvDims): number {
  return d.B * d.H * d.ctx * (d.C / d.H) * 4;
}

function checkDims(g: Gpu, d: KvDims): number {
  if (d.C % d.H !== 0) {
    throw new GpuError(`kv_attention: C = ${d.C} is not divisible by H = ${d.H}`);
  }
  const bytes = kvCacheBytes(d);
  const limit = g.device.limits.maxStorageBufferBindingSize;
  if (bytes > limit) {
    throw new GpuError(
      `kv_attention: a KV cache (B, H, ctx, hd) = (${d.B}, ${d.H}, ${d.ctx}, ${d.C / d.H}) needs ` +
        `${bytes} bytes, over the device's binding limit of ${limit}: use a smaller batch`,
    );
  }
  return d.C / d.H;
}

/** Writes the prefill's keys and values, qkv (B, T, 3C), into K and V at positions 0..T-1. */
export function kvFillKernel(
  g: Gpu,
  k: GPUBuffer,
  v: GPUBuffer,
  qkv: GPUBuffer,
  d: KvDims,
  T: number,
): void {
  const hd = checkDims(g, d);
  if (T > d.ctx) {
    throw new GpuError(`kv_attention.fill: ${T} positions do not fit a cache of ${d.ctx}`);
  }
  const n = d.B * T * d.C;
  if (n === 0) return;
  g.recorder.dispatchFlat(n, WG, {
    kernel: FILL,
    buffers: [qkv, k, v],
    params: new Params().u32(n).u32(T).u32(d.C).u32(hd).u32(d.H).u32(d.ctx),
  });
}

/**
 * One decode step of attention: appends the new token's key and value
 * (qkv (B, 1, 3C)) at position `t`, and writes y (B, C) from positions 0..t.
 * `scores` is a (B, H, ctx) scratch buffer.
 */
export function kvAttentionKernel(
  g: Gpu,
  y: GPUBuffer,
  k: GPUBuffer,
  v: GPUBuffer,
  scores: GPUBuffer,
  qkv: GPUBuffer,
  d: KvDims,
  t: number,
): void {
  const hd = checkDims(g, d);
  if (!(Number.isInteger(t) && t >= 0 && t < d.ctx)) {
    throw new GpuError(`kv_attention: position ${t} is outside the cache of ${d.ctx}`);
  }
  const L = t + 1;
  const dims = (p: Params) => p.u32(L).u32(d.C).u32(hd).u32(d.H).u32(d.ctx);
  const ns = d.B * d.H * L;
  const s = flatGrid(ns, WG);
  g.recorder.dispatch({
    kernel: SCORES,
    buffers: [qkv, k, v, scores],
    params: dims(new Params().u32(ns)).f32(1 / Math.sqrt(hd)),
    workgroups: s,
  });
  const nm = d.B * d.C;
  const m = flatGrid(nm, WG);
  g.recorder.dispatch({
    kernel: MIX,
    buffers: [scores, v, y],
    params: dims(new Params().u32(nm)),
    workgroups: m,
  });
}
