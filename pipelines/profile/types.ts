/** The configuration, report and hook types of `ssd profile`, and its defaults. */
import type { GPTConfig } from "../../core/nn/config.ts";

/** Firing-frequency histogram bins. */
export const HIST_BINS = 10;
/** Activation bytes kept on the GPU between host reads (one host wait per chunk). */
export const CHUNK_BYTES = 32 * 2 ** 20;

/** What `ssd profile` measures, and how. */
export interface ProfileConfig {
  /** Checkpoints (.safetensors) of one model shape; consecutive ones are compared. */
  checkpoints: string[];
  /** Text file or folder whose validation part is the probe; null: Brown validation split. */
  data: string | null;
  /** Probe tokens (from the start of the validation text). */
  tokens: number;
  /** Experts per layer of the partitions compared (must divide d_ff). */
  experts: number;
  /** k of the oracle top-k sets; null: experts / 4 (at least 1). */
  top_k: number | null;
  /** Windows of ctx tokens per forward pass. */
  batch: number;
  /** Balanced k-means iterations. */
  iters: number;
  /** Balanced k-means seed. */
  seed: number;
  /** Folder for the per-neuron arrays and the report; null: none written. */
  out: string | null;
  /** Activation bytes kept on the GPU per host read; default `CHUNK_BYTES`. */
  chunk_bytes?: number;
}

/** Defaults of every `ProfileConfig` field but the checkpoints. */
export const DEFAULT_PROFILE_CONFIG: Readonly<Omit<ProfileConfig, "checkpoints">> = Object.freeze({
  data: null,
  tokens: 16384,
  experts: 16,
  top_k: null,
  batch: 16,
  iters: 50,
  seed: 0,
  out: null,
});

/** Activation statistics of one FFN layer on the probe set. */
export interface LayerProfile {
  /** Layer index. */
  layer: number;
  /** Mean over tokens of the share of neurons with a > 0. */
  act_ratio: number;
  /** Population std over tokens of that share. */
  act_ratio_std: number;
  /** 10th percentile over tokens of that share. */
  act_ratio_p10: number;
  /** 90th percentile over tokens of that share. */
  act_ratio_p90: number;
  /** Share of neurons that fire on no probe token. */
  dead: number;
  /** Share of neurons that fire on every probe token. */
  always_on: number;
  /** Neurons per firing-frequency bin (`HIST_BINS` equal bins over [0, 1]). */
  histogram: number[];
  /** Inertia of this checkpoint's expert partition (when partitions were computed). */
  kmeans_inertia: number | null;
  /** Which k-means start the partition kept: warm (from the previous checkpoint's) or fresh. */
  kmeans_start: "warm" | "fresh" | null;
}

/** One checkpoint's profile. */
export interface CheckpointProfile {
  /** The file, as given. */
  path: string;
  /** Training step from `ssd.train`, when recorded. */
  step: number | null;
  /** Whether it is an MoE checkpoint (profiled dense, in original neuron order). */
  moe: boolean;
  /** Mean of the layers' activation ratios. */
  act_ratio: number;
  /** Per FFN layer. */
  layers: LayerProfile[];
  /** Files written under `out` for this checkpoint (names relative to `out`). */
  files?: { firing: string; experts: string | null };
}

/** Pattern similarity of two consecutive checkpoints. */
export interface PairSimilarity {
  /** Index (in `checkpoints`) of the earlier checkpoint, A. */
  from: number;
  /** Index of the later checkpoint, B. */
  to: number;
  /** Per layer: adjusted Rand index of the two expert partitions. */
  ari: number[];
  /** Per layer: mean overlap of oracle top-k sets, both under A's partition. */
  overlap: number[];
  /** Mean of `ari` over layers. */
  ari_mean: number;
  /** Mean of `overlap` over layers. */
  overlap_mean: number;
}

/** What `runProfile` returns (also the `--json` document). */
export interface ProfileReport {
  /** Probe text. */
  source: string;
  /** Probe tokens. */
  tokens: number;
  /** Window length (the models' ctx). */
  ctx: number;
  /** Model config shared by the checkpoints. */
  config: GPTConfig;
  /** Experts per partition. */
  experts: number;
  /** k of the oracle sets. */
  top_k: number;
  /** k-means seed and iterations. */
  kmeans: { seed: number; iters: number };
  /** Firing-frequency histogram bins. */
  hist_bins: number;
  /** Checkpoints in processing order (by step when every one has a step). */
  checkpoints: CheckpointProfile[];
  /** One entry per consecutive pair. */
  similarity: PairSimilarity[];
  /** Wall time: probe forwards and host statistics, k-means, total (seconds). */
  timing: { forward_s: number; kmeans_s: number; total_s: number };
  /** `out` as given, when files were written. */
  out: string | null;
}

/** Progress hooks of `runProfile`. */
export interface ProfileHooks {
  /** After each chunk: checkpoint index (0-based) of `count`, probe tokens done of `total`. */
  onProgress?(checkpoint: number, count: number, done: number, total: number): void;
}
