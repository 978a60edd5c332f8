/**
 * Next-token sampling on the GPU, so that a whole generation can be
 * recorded without reading logits back (a host wait per token would cost
 * more than the token's kernels on a software adapter).
 *
 * Per row r of logits (rows, V), read at offset + r·stride:
 *   greedy (temperature 0): argmax, ties to the lower id.
 *   else: keep the k largest logits (all when k = 0 or k ≥ V; order: value
 *         descending, id ascending, so ties at the cut keep the lower ids),
 *         w_i = exp((l_i − max) / temperature) over the kept ids, and draw
 *         id i by inverse CDF in id order: the first kept i with
 *         u·Σw − Σ_{kept j ≤ i} w_j < 0 (the last kept id if rounding runs
 *         past the end), u uniform in [0, 1).
 * The token is written to out[r·outStride + outCol] (u32): the sequence
 * buffer the next step's embedding reads.
 *
 * Random numbers are counter-based, not a stateful generator: u is a hash of
 * (seed, step, row), so the same seed gives the same tokens however the
 * steps are recorded or batched, and `sampleUniform` below reproduces it on
 * the host. The hash is PCG's output permutation (Jarzynski & Olano, "Hash
 * Functions for GPU Rendering", 2020) chained over the four words:
 *   h = pcg(row + pcg(step + pcg(seedHi + pcg(seedLo)))),  u = (h >> 8) / 2^24.
 *
 * Values are compared as u32 keys that order like the floats (as in
 * topk.ts), so the order is total and exact. One thread per row (64 per
 * group, 2-D grid past 65535 groups): the argmax is one pass over V, the
 * top-k cut k − 1 more (O(k·V), fine for byte vocabularies), the draw two.
 * Bindings: logits (read), out; params in group 1.
 */
import { ORDER_KEY_WGSL } from "./topk.ts";
import { defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { Params } from "../util.ts";
import { flatEntry } from "../wgsl.ts";

/** WGSL of sample.rows. */
export const SAMPLE_WGSL = /* wgsl */ `
struct P {
  rows: u32, V: u32, inStride: u32, inOffset: u32,
  outStride: u32, outCol: u32, k: u32, greedy: u32,
  seedLo: u32, seedHi: u32, step: u32,
  invTemp: f32,
}
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(1) @binding(0) var<uniform> p: P;

fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

${ORDER_KEY_WGSL}
${flatEntry(64, { id: "r", bound: "p.rows" })}
  let o = p.inOffset + r * p.inStride;
  var best = 0u;
  var bestKey = orderKey(logits[o]);
  for (var i = 1u; i < p.V; i++) {
    let key = orderKey(logits[o + i]);
    if (key > bestKey) {
      best = i;
      bestKey = key;
    }
  }
  var tok = best;
  if (p.greedy == 0u) {
    // The cut: the k-th kept (key, id); id i is kept when it ranks at or before it.
    let all = p.k == 0u || p.k >= p.V;
    var cutKey = bestKey;
    var cutId = best;
    if (!all) {
      for (var j = 1u; j < p.k; j++) {
        var nKey = 0u;
        var nId = p.V;
        for (var i = 0u; i < p.V; i++) {
          let key = orderKey(logits[o + i]);
          let after = key < cutKey || (key == cutKey && i > cutId);
          if (after && (nId == p.V || key > nKey)) {
            nKey = key;
            nId = i;
          }
        }
        cutKey = nKey;
        cutId = nId;
      }
    }
    let mx = logits[o + best];
    var total = 0.0;
    for (var i = 0u; i < p.V; i++) {
      let key = orderKey(logits[o + i]);
      if (all || key > cutKey || (key == cutKey && i <= cutId)) {
        total += exp((logits[o + i] - mx) * p.invTemp);
      }
    }
    let h = pcg(r + pcg(p.step + pcg(p.seedHi + pcg(p.seedLo))));
    var u = f32(h >> 8u) * (1.0 / 16777216.0) * total;
    for (var i = 0u; i < p.V; i++) {
      let key = orderKey(logits[o + i]);
      if (all || key > cutKey || (key == cutKey && i <= cutId)) {
        tok = i;
        u -= exp((logits[o + i] - mx) * p.invTemp);
        if (u < 0.0) { break; }
      }
    }
  }
  out[r * p.outStride + p.outCol] = tok;
}
`;

const SAMPLE = defineKernel("sample.rows", () => SAMPLE_WGSL);

/** How tokens are drawn. */
export interface SampleParams {
  /** Softmax temperature; 0 = greedy (argmax, ties to the lower id). */
  temperature: number;
  /** Keep the k most likely ids; 0 = all. */
  topK: number;
  /** RNG seed (any safe integer). */
  seed: number;
  /** Step number: the counter the random number is drawn for. */
  step: number;
}

/** Where the logit rows are read and the tokens written. */
export interface SampleLayout {
  /** Rows (sequences). */
  rows: number;
  /** Vocabulary (logits per row). */
  V: number;
  /** Elements between consecutive rows of logits (V when packed). */
  inStride: number;
  /** Element offset of row 0 of logits. */
  inOffset: number;
  /** Elements between consecutive rows of out. */
  outStride: number;
  /** Column of out that receives the tokens. */
  outCol: number;
}

/** The seed's low and high 32-bit words (two's complement for negative seeds). */
export function seedWords(seed: number): [number, number] {
  const s = BigInt(seed);
  return [Number(BigInt.asUintN(32, s)), Number(BigInt.asUintN(32, s >> 32n))];
}

/** PCG's output permutation on a u32, as the WGSL `pcg`. */
export function pcgHash(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** The uniform number in [0, 1) that sample.rows draws for (seed, step, row). */
export function sampleUniform(seed: number, step: number, row: number): number {
  const [lo, hi] = seedWords(seed);
  const h = pcgHash((row + pcgHash((step + pcgHash((hi + pcgHash(lo)) >>> 0)) >>> 0)) >>> 0);
  return (h >>> 8) / 16777216;
}

/** Writes one sampled token per row of logits into out (u32). */
export function sampleKernel(
  g: Gpu,
  out: GPUBuffer,
  logits: GPUBuffer,
  layout: SampleLayout,
  s: SampleParams,
): void {
  if (layout.rows === 0) return;
  const [lo, hi] = seedWords(s.seed);
  const greedy = s.temperature === 0;
  g.recorder.dispatchFlat(layout.rows, 64, {
    kernel: SAMPLE,
    buffers: [logits, out],
    params: new Params()
      .u32(layout.rows).u32(layout.V).u32(layout.inStride).u32(layout.inOffset)
      .u32(layout.outStride).u32(layout.outCol).u32(s.topK).u32(greedy ? 1 : 0)
      .u32(lo).u32(hi).u32(s.step)
      .f32(greedy ? 0 : 1 / s.temperature),
  });
}
