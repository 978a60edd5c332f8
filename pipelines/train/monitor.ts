/**
 * The schedule's monitor: what one check measures for the switch rules
 * (`./switch_rule.ts`).
 *
 *   - similarity: per FFN layer, balanced k-means on the L2-normalised c_fc
 *     rows, warm-started from the reference partition (a fresh k-means++
 *     start replaces it only when its inertia is lower by more than
 *     `fresh_margin`, see core/moe/stability.ts), and the ARI of the two;
 *     mean over layers, as `ssd profile`'s `ari_mean`;
 *   - overlap: each probe token's oracle top-k experts under the reference
 *     partition, against the same sets at the previous check;
 *   - coverage: the share of each probe token's activation mass inside the
 *     top-k experts of the centroid router built from the new partition;
 *   - moe_gap: the probe loss of the MoE at top-k against the dense loss.
 *
 * In a dense phase the new partition becomes the reference (and, for the
 * guard, is applied to the model: a dense FFN is the same function under any
 * neuron permutation). In a sparse phase the reference stays the partition
 * the phase trains with, so the similarity reads as drift from it.
 */
import { centroidRouter, modelFcRows, repartitionModel } from "../../core/moe/moefy.ts";
import {
  adjustedRandIndex,
  coverageFromMass,
  expertMass,
  type Labels,
  oracleTopK,
  permutationFromLabels,
  permuteRows,
  topkOverlap,
} from "../../core/moe/partition.ts";
import { routerTopK } from "../../core/moe/router_fit.ts";
import { DEFAULT_FRESH_MARGIN, trackedPartition } from "../../core/moe/stability.ts";
import type { DistanceDevice } from "../../core/moe/balanced_kmeans.ts";
import { ConfigError } from "../../core/errors.ts";
import { captureFfn } from "../../core/nn/ffn_capture.ts";
import type { GPT } from "../../core/nn/gpt.ts";
import { evaluateTokens } from "../../core/nn/token_nll.ts";
import type { AdamW } from "../../core/optim/adamw.ts";
import { EMPTY_READING, type MonitorReading } from "./switch_rule.ts";
import type { Phase } from "./schedule.ts";

/**
 * Pattern similarity of two partitions of the same neurons: their
 * adjusted Rand index (1 = the same grouping up to expert relabelling).
 */
export function partitionSimilarity(prevLabels: Labels, labels: Labels): number {
  return adjustedRandIndex(prevLabels, labels);
}

/** Options of `PartitionMonitor`. */
export interface MonitorOptions {
  /** Experts per layer. */
  experts: number;
  /** Experts per token the probe readings assume (default experts / 4). */
  top_k?: number;
  /** Relative inertia margin a fresh start must beat the warm one by (default 0.01). */
  fresh_margin?: number;
  /** k-means iterations (default: balancedKMeans's). */
  iters?: number;
  /** Seed of the fresh k-means++ start (default 0). */
  seed?: number;
  /** Distance path (default "auto"). */
  distance?: DistanceDevice;
}

/** One layer's partition at a check. */
export interface LayerCheck {
  /** Neuron → expert, in original neuron order. */
  labels: Uint32Array;
  /** ARI with the previous partition (null at the first check). */
  similarity: number | null;
  /** Which start was kept. */
  start: "warm" | "fresh";
  /** Inertia of the kept partition. */
  inertia: number;
  /** Inertia of the warm run (null at the first check). */
  warm_inertia: number | null;
  /** Inertia of the fresh run. */
  fresh_inertia: number;
}

/** What a partition check returns. */
export interface MonitorResult {
  /** Mean over layers of the ARI with the previous partitions (null at the first check). */
  similarity: number | null;
  /** Per layer. */
  layers: LayerCheck[];
}

/** Serializable monitor state. */
export interface MonitorState {
  /** Per layer, the reference partition (original neuron order); null before the first check. */
  labels: number[][] | null;
  /** Per layer, the probe tokens' oracle top-k sets (N·k) at the last overlap reading. */
  sets?: number[][] | null;
}

/** What a check needs beside the model: the probe and how to evaluate on it. */
export interface ReadContext {
  /** The run's optimizer (its moments move with the neurons when the guard repartitions). */
  optimizer: AdamW;
  /** Held-out probe tokens. */
  probe: Uint8Array;
  /** Windows per forward when evaluating. */
  evalBatch: number;
}

/**
 * Partitions each layer and measures the readings a switch rule asks for;
 * see the module comment. `labels` is the reference partition: in a dense
 * phase, the latest one (what a switch to sparse applies).
 */
export class PartitionMonitor {
  readonly experts: number;
  readonly topK: number;
  readonly freshMargin: number;
  #labels: Uint32Array[] | null = null;
  #sets: Uint32Array[] | null = null;

  /** A monitor with no reference partition yet (or the one in `state`). */
  constructor(readonly options: MonitorOptions, state?: MonitorState) {
    if (!Number.isSafeInteger(options.experts) || options.experts < 1) {
      throw new ConfigError(`--experts must be an integer >= 1, got ${options.experts}`);
    }
    this.experts = options.experts;
    this.topK = options.top_k ?? Math.max(1, Math.floor(options.experts / 4));
    this.freshMargin = options.fresh_margin ?? DEFAULT_FRESH_MARGIN;
    if (!(this.freshMargin >= 0 && this.freshMargin < 1)) {
      throw new ConfigError(`--fresh-margin must be in [0, 1), got ${this.freshMargin}`);
    }
    if (state?.labels) this.#labels = state.labels.map((l) => Uint32Array.from(l));
    if (state?.sets) this.#sets = state.sets.map((s) => Uint32Array.from(s));
  }

  /** The reference partition per layer (null before the first check). */
  get labels(): readonly Uint32Array[] | null {
    return this.#labels;
  }

  /** A JSON-safe copy of the reference partitions and sets. */
  state(): MonitorState {
    return {
      labels: this.#labels ? this.#labels.map((l) => Array.from(l)) : null,
      sets: this.#sets ? this.#sets.map((s) => Array.from(s)) : null,
    };
  }

  /**
   * Partitions each layer's rows ((d_ff, d_model) row-major, original neuron
   * order) and compares them with the reference; with `update` (default)
   * the new partitions become the reference.
   */
  async check(
    rows: Float32Array[],
    dff: number,
    dModel: number,
    update = true,
  ): Promise<MonitorResult> {
    const prev = this.#labels;
    if (prev && prev.length !== rows.length) {
      throw new ConfigError(
        `PartitionMonitor.check: ${rows.length} layers, the previous check had ${prev.length}`,
      );
    }
    const o = this.options;
    const layers: LayerCheck[] = [];
    for (const [l, r] of rows.entries()) {
      const kept = await trackedPartition(r, dff, dModel, this.experts, {
        warm: prev?.[l],
        fresh_margin: this.freshMargin,
        iters: o.iters,
        seed: o.seed,
        distance: o.distance,
      });
      const { labels, ...rest } = kept;
      layers.push({
        labels,
        similarity: prev ? partitionSimilarity(prev[l], labels) : null,
        ...rest,
      });
    }
    if (update || !prev) this.#labels = layers.map((x) => x.labels);
    const similarity = prev
      ? layers.reduce((a, x) => a + x.similarity!, 0) / Math.max(1, layers.length)
      : null;
    return { similarity, layers };
  }

  /**
   * One monitor check of `model` in `phase`, measuring `need` (the
   * similarity always: it finds the partition).
   */
  async read(
    model: GPT,
    phase: Phase,
    need: readonly (keyof MonitorReading)[],
    ctx: ReadContext,
  ): Promise<MonitorReading> {
    const { d_ff: F, d_model: C } = model.config;
    const rows = await modelFcRows(model);
    const ref = this.#labels;
    const part = await this.check(rows, F, C, phase === "dense");
    const labels = part.layers.map((x) => x.labels);
    const r: MonitorReading = { ...EMPTY_READING, similarity: part.similarity };
    const wantOverlap = need.includes("overlap");
    const wantCoverage = need.includes("coverage");
    if (wantOverlap || wantCoverage) {
      const perms = model.moe?.perms;
      const stored = (lab: Uint32Array, l: number) => {
        const s = new Uint32Array(F);
        lab.forEach((e, i) => (s[perms ? perms[l][i] : i] = e));
        return s;
      };
      const cap = await captureFfn(model, ctx.probe);
      const k = this.topK;
      const E = this.experts;
      const L = cap.length;
      // The previous check's sets are comparable when they cover the same probe tokens.
      const prevSets = this.#sets;
      const compared = wantOverlap && ref !== null && prevSets?.length === L &&
        prevSets.every((p, l) => p.length === cap[l].n * k);
      let overlap = 0;
      let cover = 0;
      const sets: Uint32Array[] = [];
      cap.forEach((c, l) => {
        const massNew = expertMass(c.act, c.n, stored(labels[l], l), E);
        if (wantOverlap) sets.push(oracleTopK(massNew, c.n, E, k));
        if (compared) {
          const massRef = expertMass(c.act, c.n, stored(ref![l], l), E);
          overlap += topkOverlap(prevSets![l], oracleTopK(massRef, c.n, E, k), k);
        }
        if (wantCoverage) {
          const fc = permuteRows(rows[l], F, C, permutationFromLabels(labels[l], E));
          const router = centroidRouter(fc, F, C, E);
          const sel = routerTopK(c.input, router, c.n, C, E, k);
          cover += coverageFromMass(massNew, c.n, E, sel, k);
        }
      });
      if (wantOverlap) {
        r.overlap = compared ? overlap / L : null;
        if (phase === "dense") this.#sets = sets;
      }
      if (wantCoverage) r.coverage = cover / L;
    }
    if (need.includes("moe_gap")) {
      // Dense phase: the MoE built now is the model under the new partition.
      if (phase === "dense") await repartitionModel(model, ctx.optimizer, labels);
      const dense = await evaluateTokens(model, ctx.probe, ctx.evalBatch);
      const moe = await evaluateTokens(model, ctx.probe, ctx.evalBatch, this.topK);
      r.moe_gap = (moe.nll - dense.nll) / dense.nll;
    }
    return r;
  }
}
