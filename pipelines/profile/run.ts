/**
 * `ssd profile`: how sparse each FFN layer's activations are, which neurons
 * fire, and how much the activation structure moves between checkpoints
 * (the expert partitions SSD training monitors), measured on a fixed probe
 * set of held-out tokens.
 *
 * Probe set: the first `tokens` tokens of the validation split (of the
 * embedded Brown Corpus, or the validation part of `--data`), cut into
 * consecutive windows of ctx input tokens starting at 0 (the windows of
 * `ssd eval`; the last may be shorter). No sampling: every checkpoint and every
 * run sees the same tokens in the same windows, and token n of the probe is
 * row n of every activation matrix below.
 *
 * Per checkpoint and FFN layer (a = the FFN activation, one per neuron per
 * probe token):
 *   - `act_ratio`: mean over probe tokens of the share of neurons with a > 0;
 *     `act_ratio_std` its population std over tokens, `act_ratio_p10/p90` its
 *     10th/90th percentile over tokens (linear between order statistics);
 *   - `dead`: share of neurons with a > 0 on no probe token; `always_on`: on
 *     every probe token;
 *   - `histogram`: neurons per firing-frequency bin, `HIST_BINS` equal bins
 *     over [0, 1] (bin i holds frequencies in [i/B, (i+1)/B), the last bin
 *     also 1), so dead neurons are in bin 0 and always-on ones in the last.
 *
 * Between consecutive checkpoints A (earlier) and B, per layer:
 *   - `ari`: adjusted Rand index of their expert partitions (balanced k-means
 *     on the L2-normalised c_fc rows, E experts, fixed seed; B's partition is
 *     warm-started from A's, and a fresh start replaces it only when its
 *     inertia is lower by more than `DEFAULT_FRESH_MARGIN`: the rule of the
 *     schedule's monitor, `core/moe/stability.ts`);
 *   - `overlap`: A's partition groups the neurons of BOTH checkpoints into
 *     experts; for each probe token the oracle top-k experts (largest
 *     activation mass Σ|a| over the expert's neurons, the plain sum for ReLU;
 *     ties to the lower expert) under A's activations and under
 *     B's are compared, |S_A ∩ S_B| / k, and averaged over the probe tokens.
 *     1 = every token would pick the same experts; a random choice gives k/E.
 *     One partition for both, because oracle sets taken under two different
 *     partitions name unrelated experts and cannot be compared.
 *
 * A neuron is identified by its index in c_fc (MoE checkpoints are put back
 * in original neuron order with the permutations of `ssd.moe` first), so the
 * checkpoints of one run are compared neuron by neuron. Checkpoints must
 * share one model config. When every checkpoint records its training step
 * they are processed in step order (not file-name order); otherwise in the
 * order given.
 *
 * Partitions (and so `ari`, `overlap`, the k-means fields) are computed
 * only when two or more checkpoints are given.
 *
 * `out` (`--out DIR`) receives, for checkpoint i in processing order and
 * `NN` = i on two digits (so equal file names from different runs stay
 * apart), NumPy .npy files (format 1.0, little-endian, C order; `numpy.load`
 * reads them), in original neuron order:
 *   - `NN_<name>.firing.npy`: float32 [n_layer, d_ff], each neuron's firing
 *     frequency (share of probe tokens with a > 0);
 *   - `NN_<name>.experts.npy`: int32 [n_layer, d_ff], each neuron's expert in
 *     the checkpoint's partition (only when partitions were computed);
 *   - `profile.json`: the report (the `--json` document, with these names).
 * Files are written only after everything is computed, each through a
 * temporary file and a rename.
 *
 * Cost: the activations of a chunk of windows (about `CHUNK_BYTES`) stay on
 * the GPU until one `readAll` (one host wait per chunk); the statistics are
 * then accumulated on the host in one pass over the chunk.
 */
import { resolve } from "node:path";
import { writeFileAtomic } from "../../core/atomic_write.ts";
import { loadGPT } from "../../core/nn/gpt_checkpoint.ts";
import { autotuneMatmul } from "../../gpu/autotune.ts";
import { initGpu } from "../../gpu/runtime.ts";
import { layerStats, neuronOrder } from "./activation_stats.ts";
import { type Entry, loadProbeTokens, prepare } from "./inputs.ts";
import { writeArrays } from "./output.ts";
import { probeModel } from "./probe.ts";
import { comparePair, partitionCheckpoint } from "./similarity.ts";
import {
  type CheckpointProfile,
  CHUNK_BYTES,
  HIST_BINS,
  type PairSimilarity,
  type ProfileConfig,
  type ProfileHooks,
  type ProfileReport,
} from "./types.ts";

export { loadProbeTokens } from "./inputs.ts";
export { npyBytes } from "./output.ts";
export {
  type CheckpointProfile,
  CHUNK_BYTES,
  DEFAULT_PROFILE_CONFIG,
  HIST_BINS,
  type LayerProfile,
  type PairSimilarity,
  type ProfileConfig,
  type ProfileHooks,
  type ProfileReport,
} from "./types.ts";

/** What `runProfile` carries from one checkpoint to the next. */
interface ProfileRun {
  config: ProfileConfig;
  hooks: ProfileHooks;
  tokens: Uint8Array;
  count: number;
  topK: number;
  pairs: boolean;
  kmeansMs: number;
  forwardMs: number;
  profiles: CheckpointProfile[];
  /** [checkpoint][layer] (d_ff), original order. */
  firing: Float32Array[][];
  /** [checkpoint][layer] (d_ff), original order (empty lists without pairs). */
  labels: Int32Array[][];
  similarity: PairSimilarity[];
  /** The previous checkpoint's activation mass under its own partition, per layer (N, E). */
  prevOwnMass: Float64Array[] | null;
}

/** Partitions, probes and summarises checkpoint `ci`, and compares it with the previous one. */
async function profileOne(run: ProfileRun, ci: number, entry: Entry): Promise<void> {
  const { config, tokens, pairs } = run;
  const N = tokens.length;
  const E = config.experts;
  const loaded = await loadGPT(entry.path);
  try {
    const { model } = loaded;
    const orig = neuronOrder(model, loaded.moe);
    const L = model.config.n_layer;
    // Partitions come first: the probe pass sums activations by expert.
    let part = null;
    if (pairs) {
      const tk = performance.now();
      part = await partitionCheckpoint(model, run.labels[ci - 1], config);
      run.kmeansMs += performance.now() - tk;
    }
    const own = part?.labels ?? [];
    run.labels.push(own);
    // Partitions applied in the probe pass: this checkpoint's own, then
    // (for the pair with the previous one) the previous one's.
    const applied = pairs ? [own, ...(ci > 0 ? [run.labels[ci - 1]] : [])] : [];
    const stats = layerStats(orig, applied, N, E);
    const tf = performance.now();
    await probeModel(model, tokens, config.batch, config.chunk_bytes ?? CHUNK_BYTES, stats, (d) => {
      run.hooks.onProgress?.(ci, run.count, d, N);
    });
    run.forwardMs += performance.now() - tf;

    const summaries = stats.map((s, l) => s.summary(l, orig[l]));
    summaries.forEach((s, l) => {
      s.profile.kmeans_inertia = part?.inertia[l] ?? null;
      s.profile.kmeans_start = part?.start[l] ?? null;
    });
    run.firing.push(summaries.map((s) => s.firing));
    const layers = summaries.map((s) => s.profile);
    run.profiles.push({
      path: entry.path,
      step: entry.step,
      moe: loaded.moe !== null,
      act_ratio: layers.reduce((a, p) => a + p.act_ratio, 0) / L,
      layers,
    });
    if (pairs && ci > 0) {
      const massB = stats.map((s) => s.mass[1]);
      const prev = run.labels[ci - 1];
      run.similarity.push(comparePair(ci - 1, prev, own, run.prevOwnMass!, massB, N, E, run.topK));
    }
    run.prevOwnMass = pairs ? stats.map((s) => s.mass[0]) : null;
  } finally {
    loaded.model.release();
  }
}

/**
 * Profiles every checkpoint on the probe set and compares consecutive ones.
 *
 * Flags, headers (shapes, tokenizer) and the probe text are checked before
 * the GPU is opened, and files are written only once everything is computed,
 * so bad input fails fast and leaves nothing behind.
 *
 * @throws ConfigError for bad flags or too little probe text
 * @throws CheckpointError for a missing or corrupt checkpoint, or checkpoints of different shapes
 * @throws GpuError when there is no WebGPU adapter
 */
export async function runProfile(
  config: ProfileConfig,
  hooks: ProfileHooks = {},
): Promise<ProfileReport> {
  const t0 = performance.now();
  const { entries, topK } = await prepare(config);
  const { tokens, source } = loadProbeTokens(config.data, config.tokens);
  const model0 = entries[0].config;
  const pairs = entries.length > 1;

  await autotuneMatmul(await initGpu());
  const run: ProfileRun = {
    config,
    hooks,
    tokens,
    count: entries.length,
    topK,
    pairs,
    kmeansMs: 0,
    forwardMs: 0,
    profiles: [],
    firing: [],
    labels: [],
    similarity: [],
    prevOwnMass: null,
  };
  for (const [ci, entry] of entries.entries()) await profileOne(run, ci, entry);

  const report: ProfileReport = {
    source,
    tokens: tokens.length,
    ctx: model0.ctx,
    config: model0,
    experts: config.experts,
    top_k: topK,
    kmeans: { seed: config.seed, iters: config.iters },
    hist_bins: HIST_BINS,
    checkpoints: run.profiles,
    similarity: run.similarity,
    timing: { forward_s: run.forwardMs / 1000, kmeans_s: run.kmeansMs / 1000, total_s: 0 },
    out: config.out,
  };
  if (config.out !== null) {
    const { n_layer: L, d_ff } = model0;
    await writeArrays(config.out, run.profiles, run.firing, pairs ? run.labels : null, L, d_ff);
  }
  report.timing.total_s = (performance.now() - t0) / 1000;
  if (config.out !== null) {
    const json = new TextEncoder().encode(JSON.stringify(report, null, 2) + "\n");
    await writeFileAtomic(resolve(config.out, "profile.json"), json);
  }
  return report;
}
