/**
 * Expert partitions of a checkpoint and the similarity of two consecutive
 * checkpoints: ARI of their partitions, overlap of their oracle top-k sets.
 */
import { modelFcRows } from "../../core/moe/moefy.ts";
import { adjustedRandIndex, oracleTopK, topkOverlap } from "../../core/moe/partition.ts";
import { trackedPartition } from "../../core/moe/stability.ts";
import type { GPT } from "../../core/nn/gpt.ts";
import type { PairSimilarity, ProfileConfig } from "./types.ts";

/** One checkpoint's expert partitions (original neuron order), by the shared stability rule. */
export async function partitionCheckpoint(
  model: GPT,
  prev: Int32Array[] | undefined,
  config: ProfileConfig,
): Promise<{ labels: Int32Array[]; inertia: number[]; start: ("warm" | "fresh")[] }> {
  const { d_ff, d_model } = model.config;
  const rows = await modelFcRows(model);
  const out = {
    labels: [] as Int32Array[],
    inertia: [] as number[],
    start: [] as ("warm" | "fresh")[],
  };
  for (const [l, r] of rows.entries()) {
    const p = await trackedPartition(r, d_ff, d_model, config.experts, {
      warm: prev?.[l],
      iters: config.iters,
      seed: config.seed,
    });
    out.labels.push(Int32Array.from(p.labels));
    out.inertia.push(p.inertia);
    out.start.push(p.start);
  }
  return out;
}

/** ARI and oracle top-k overlap of checkpoints A (`from`) and B, per layer. */
export function comparePair(
  from: number,
  labelsA: Int32Array[],
  labelsB: Int32Array[],
  massA: Float64Array[],
  massBUnderA: Float64Array[],
  N: number,
  E: number,
  topK: number,
): PairSimilarity {
  const L = labelsA.length;
  const ari: number[] = [];
  const overlap: number[] = [];
  for (let l = 0; l < L; l++) {
    ari.push(adjustedRandIndex(labelsA[l], labelsB[l]));
    const setsA = oracleTopK(massA[l], N, E, topK);
    const setsB = oracleTopK(massBUnderA[l], N, E, topK);
    overlap.push(topkOverlap(setsA, setsB, topK));
  }
  return {
    from,
    to: from + 1,
    ari,
    overlap,
    ari_mean: ari.reduce((a, b) => a + b, 0) / L,
    overlap_mean: overlap.reduce((a, b) => a + b, 0) / L,
  };
}
