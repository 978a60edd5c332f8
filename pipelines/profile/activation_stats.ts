/**
 * Host-side activation statistics of one FFN layer over the probe set:
 * firing counts per token and per neuron, activation mass per expert, and
 * the layer summary (act ratio, its spread, dead/always-on, histogram).
 */
import { expertMass } from "../../core/moe/partition.ts";
import type { GPT } from "../../core/nn/gpt.ts";
import type { MoeLayout } from "../../core/nn/moe_layout.ts";
import { HIST_BINS, type LayerProfile } from "./types.ts";

/** Linear-interpolated quantile of sorted values. */
function quantile(sorted: ArrayLike<number>, q: number): number {
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** Host accumulators of one layer over the probe set (stored neuron order). */
export class LayerStats {
  /** Neurons with a > 0, per probe token. */
  readonly onPerToken: Uint32Array;
  /** Probe tokens with a > 0, per stored neuron. */
  readonly fires: Float64Array;
  /** Activation mass per token per expert, one matrix (N, E) per partition applied. */
  readonly mass: Float64Array[];

  constructor(n: number, dff: number, readonly labels: Int32Array[], readonly E: number) {
    this.onPerToken = new Uint32Array(n);
    this.fires = new Float64Array(dff);
    this.mass = labels.map(() => new Float64Array(n * E));
  }

  /** Adds `rows` tokens of activations (rows, d_ff) starting at probe token `row0`. */
  add(act: Float32Array, row0: number, rows: number): void {
    const dff = this.fires.length;
    const { fires, onPerToken, E } = this;
    for (let r = 0; r < rows; r++) {
      const base = r * dff;
      let on = 0;
      for (let j = 0; j < dff; j++) {
        if (act[base + j] > 0) {
          on++;
          fires[j]++;
        }
      }
      onPerToken[row0 + r] = on;
    }
    this.labels.forEach((lab, p) => {
      this.mass[p].set(expertMass(act, rows, lab, E), row0 * E);
    });
  }

  /** The layer's summary, with `fires` mapped to original neuron order by `orig`. */
  summary(layer: number, orig: Int32Array): { profile: LayerProfile; firing: Float32Array } {
    const n = this.onPerToken.length;
    const dff = this.fires.length;
    let sum = 0;
    for (const c of this.onPerToken) sum += c;
    const mean = sum / (n * dff);
    let sq = 0;
    for (const c of this.onPerToken) sq += (c / dff - mean) ** 2;
    const sorted = Uint32Array.from(this.onPerToken).sort();
    const histogram = new Array<number>(HIST_BINS).fill(0);
    const firing = new Float32Array(dff);
    let dead = 0;
    let always = 0;
    for (let i = 0; i < dff; i++) {
      const f = this.fires[orig[i]];
      firing[i] = f / n;
      if (f === 0) dead++;
      if (f === n) always++;
      // Integer arithmetic, so a frequency of exactly i/B lands in bin i.
      histogram[Math.min(HIST_BINS - 1, Math.floor((f * HIST_BINS) / n))]++;
    }
    return {
      profile: {
        layer,
        act_ratio: mean,
        act_ratio_std: Math.sqrt(sq / n),
        act_ratio_p10: quantile(sorted, 0.1) / dff,
        act_ratio_p90: quantile(sorted, 0.9) / dff,
        dead: dead / dff,
        always_on: always / dff,
        histogram,
        kmeans_inertia: null,
        kmeans_start: null,
      },
      firing,
    };
  }
}

/**
 * Per layer, `orig[i]` = stored position of original neuron i: the identity
 * for a dense checkpoint, `ssd.moe`'s permutation for an MoE one.
 */
export function neuronOrder(model: GPT, moe: Pick<MoeLayout, "perms"> | null): Int32Array[] {
  const { n_layer, d_ff } = model.config;
  const perms = moe?.perms;
  return Array.from({ length: n_layer }, (_, l) => {
    const p = perms?.[l];
    return p ? Int32Array.from(p) : Int32Array.from({ length: d_ff }, (_, i) => i);
  });
}

/**
 * Per layer, the probe statistics with the partitions `applied` (original
 * neuron order) mapped to stored order: `orig[l][i]` = stored row of neuron i.
 */
export function layerStats(
  orig: Int32Array[],
  applied: Int32Array[][],
  N: number,
  E: number,
): LayerStats[] {
  return orig.map((o, l) => {
    const stored = applied.map((lab) => {
      const s = new Int32Array(o.length);
      o.forEach((pos, i) => (s[pos] = lab[l][i]));
      return s;
    });
    return new LayerStats(N, o.length, stored, E);
  });
}
