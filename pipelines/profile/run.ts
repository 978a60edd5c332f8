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
import { defaultTopK } from "../../core/nn/moe_layout.ts";
import { writeFileAtomic } from "../../core/atomic_write.ts";
import { resolve } from "node:path";
import { META_CONFIG, readHeader, readSsdMetadata } from "../../core/checkpoint.ts";
import { BROWN_SOURCE } from "../../core/corpus_brown.ts";
import { evalWindows, loadBrownDataset, loadText, windowGroups } from "../../core/data.ts";
import { CheckpointError, ConfigError, SsdError } from "../../core/errors.ts";
import { modelFcRows } from "../../core/moe/moefy.ts";
import { trackedPartition } from "../../core/moe/stability.ts";
import {
  adjustedRandIndex,
  expertMass,
  oracleTopK,
  topkOverlap,
} from "../../core/moe/partition.ts";
import { type GPTConfig, validateConfig } from "../../core/nn/config.ts";
import type { GPT } from "../../core/nn/gpt.ts";
import { loadGPT } from "../../core/nn/gpt_checkpoint.ts";
import type { MoeLayout } from "../../core/nn/moe_layout.ts";
import { keep, tidy } from "../../core/scope.ts";
import { noGrad } from "../../core/tape.ts";
import { readAll, type Tensor, tensor } from "../../core/tensor.ts";
import { autotuneMatmul } from "../../gpu/autotune.ts";
import { gpu, initGpu } from "../../gpu/runtime.ts";
import { requireByteTokenizer, requirePositiveInt } from "../checks.ts";

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

/** A checkpoint as seen from its header, before anything is loaded. */
interface Entry {
  path: string;
  config: GPTConfig;
  step: number | null;
}

function stepOf(train: Record<string, unknown> | null): number | null {
  const s = train?.step;
  return typeof s === "number" && Number.isFinite(s) ? s : null;
}

/** Reads every header and checks that the checkpoints can be profiled together. */
async function readEntries(paths: string[]): Promise<Entry[]> {
  const entries: Entry[] = [];
  for (const path of paths) {
    const header = await readHeader(path);
    const meta = readSsdMetadata(header);
    let config: GPTConfig;
    try {
      config = validateConfig(meta.config as unknown as GPTConfig);
    } catch (e) {
      if (e instanceof SsdError) {
        throw new CheckpointError(`Checkpoint ${path} has an invalid ${META_CONFIG}: ${e.message}`);
      }
      throw e;
    }
    const train = meta.train ?? null;
    requireByteTokenizer({ config, train }, path);
    entries.push({ path, config, step: stepOf(train) });
  }
  const first = entries[0];
  for (const e of entries.slice(1)) {
    const keys = Object.keys({ ...first.config, ...e.config }) as (keyof GPTConfig)[];
    const diff = keys.find((k) => first.config[k] !== e.config[k]);
    if (diff !== undefined) {
      const values = `${diff} ${first.config[diff]} vs ${e.config[diff]}`;
      throw new CheckpointError(
        `Cannot profile ${first.path} and ${e.path} together: their model configs differ ` +
          `(${values}); give checkpoints of one model shape`,
      );
    }
  }
  // Stable: checkpoints with equal steps keep the order given.
  if (entries.every((e) => e.step !== null)) entries.sort((a, b) => a.step! - b.step!);
  return entries;
}

/** Checks the flags, then reads the headers (fast failures before any GPU work). */
async function prepare(config: ProfileConfig): Promise<{ entries: Entry[]; topK: number }> {
  if (config.checkpoints.length === 0) {
    throw new ConfigError("profile: give at least one checkpoint");
  }
  requirePositiveInt("--tokens", config.tokens);
  requirePositiveInt("--experts", config.experts);
  requirePositiveInt("--batch", config.batch);
  requirePositiveInt("--iters", config.iters);
  if (!(Number.isSafeInteger(config.seed) && config.seed >= 0)) {
    throw new ConfigError(`--seed must be a non-negative integer, got ${config.seed}`);
  }
  const topK = config.top_k ?? defaultTopK(config.experts);
  if (!(Number.isSafeInteger(topK) && topK >= 1 && topK <= config.experts)) {
    throw new ConfigError(
      `--top-k must be an integer in 1..${config.experts} (the expert count), got ${topK}`,
    );
  }
  if (config.out !== null) {
    try {
      if (!Deno.statSync(config.out).isDirectory) {
        throw new ConfigError(`--out: ${config.out} exists and is not a folder`);
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  const entries = await readEntries(config.checkpoints);
  const { d_ff } = entries[0].config;
  if (d_ff % config.experts !== 0) {
    throw new ConfigError(
      `--experts ${config.experts} does not divide d_ff ${d_ff}: choose a divisor of ${d_ff}`,
    );
  }
  return { entries, topK };
}

/** The first `n` tokens of the validation text, and where they came from. */
export function loadProbeTokens(
  data: string | null,
  n: number,
): { tokens: Uint8Array; source: string } {
  let val: Uint8Array;
  let source: string;
  if (data === null) {
    val = loadBrownDataset().val;
    source = `${BROWN_SOURCE} (validation split)`;
  } else {
    const d = loadText(data);
    val = d.val;
    source = `${d.source} (validation part)`;
  }
  if (val.length < n) {
    throw new ConfigError(
      `--tokens ${n}: the validation text ${source} has only ${val.length} tokens; ` +
        `give --tokens ${val.length} or less, or more text`,
    );
  }
  return { tokens: val.subarray(0, n), source };
}

/** Linear-interpolated quantile of sorted values. */
function quantile(sorted: ArrayLike<number>, q: number): number {
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** Host accumulators of one layer over the probe set (stored neuron order). */
class LayerStats {
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
function neuronOrder(model: GPT, moe: Pick<MoeLayout, "perms"> | null): Int32Array[] {
  const { n_layer, d_ff } = model.config;
  const perms = moe?.perms;
  return Array.from({ length: n_layer }, (_, l) => {
    const p = perms?.[l];
    return p ? Int32Array.from(p) : Int32Array.from({ length: d_ff }, (_, i) => i);
  });
}

/**
 * Runs the probe windows through `model` and feeds every layer's FFN
 * activations to `stats`, one host wait per chunk of windows.
 */
async function probeModel(
  model: GPT,
  tokens: Uint8Array,
  batch: number,
  chunkBytes: number,
  stats: LayerStats[],
  onChunk: (done: number) => void,
): Promise<void> {
  const { ctx, n_layer, d_ff } = model.config;
  // Windows over the probe as inputs: n + 1 "tokens" make n scored positions, one per probe token.
  const windows = evalWindows({ length: tokens.length + 1 }, ctx);
  const perChunk = Math.max(1, Math.floor(chunkBytes / (ctx * d_ff * n_layer * 4)));
  for (let c0 = 0; c0 < windows.length; c0 += perChunk) {
    const chunk = windows.slice(c0, c0 + perChunk);
    const groups = windowGroups(chunk, ctx, batch);
    const acts: Tensor[] = []; // group-major, then layer: (B, T, d_ff) each
    noGrad(() => {
      for (const group of groups) {
        const T = group[0].scored;
        const x = new Uint32Array(group.length * T);
        group.forEach((w, b) => x.set(tokens.subarray(w.start, w.start + T), b * T));
        tidy(() => {
          model.forward(tensor(x, [group.length, T], { dtype: "u32" }), undefined, {
            probe: (a) => acts.push(keep(a)),
          });
        });
        // Submit in pieces so one command buffer does not grow without bound.
        if (acts.length % (8 * n_layer) === 0) gpu().recorder.flush();
      }
    });
    let host: Float32Array[];
    try {
      host = (await readAll(acts)) as Float32Array[];
    } finally {
      for (const t of acts) t.release();
    }
    let row = chunk[0].start;
    groups.forEach((group, gi) => {
      const rows = group.length * group[0].scored;
      for (let l = 0; l < n_layer; l++) stats[l].add(host[gi * n_layer + l], row, rows);
      row += rows;
    });
    onChunk(row);
  }
}

/** A minimal .npy (format 1.0) of a little-endian f4 or i4 array of the given shape. */
export function npyBytes(data: Float32Array | Int32Array, shape: number[]): Uint8Array {
  const descr = data instanceof Float32Array ? "<f4" : "<i4";
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(", ");
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${dims}), }`;
  // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64.
  const total = Math.ceil((10 + header.length + 1) / 64) * 64;
  header = header.padEnd(total - 10 - 1) + "\n";
  const out = new Uint8Array(total + data.byteLength);
  out.set([
    0x93,
    ...new TextEncoder().encode("NUMPY"),
    1,
    0,
    header.length & 0xff,
    header.length >> 8,
  ]);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), total);
  return out;
}

/** `runs/a/ckpt-500.safetensors` → `00_ckpt-500` (the index keeps equal file names apart). */
function fileStem(index: number, path: string): string {
  const base = path.split(/[\\/]/).pop()!.replace(/\.safetensors$/, "");
  return `${String(index).padStart(2, "0")}_${base.replace(/[^A-Za-z0-9._-]/g, "_")}`;
}

/** One checkpoint's expert partitions (original neuron order), by the shared stability rule. */
async function partitionCheckpoint(
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

/**
 * Per layer, the probe statistics with the partitions `applied` (original
 * neuron order) mapped to stored order: `orig[l][i]` = stored row of neuron i.
 */
function layerStats(
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

/** ARI and oracle top-k overlap of checkpoints A (`from`) and B, per layer. */
function comparePair(
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

/** Writes the .npy files and sets each profile's `files` (profile.json is written last). */
async function writeArrays(
  out: string,
  profiles: CheckpointProfile[],
  firing: Float32Array[][],
  labels: Int32Array[][] | null,
  L: number,
  d_ff: number,
): Promise<void> {
  await Deno.mkdir(out, { recursive: true });
  const flat = (parts: ArrayLike<number>[], into: Float32Array | Int32Array) => {
    parts.forEach((f, l) => into.set(f, l * d_ff));
    return into;
  };
  for (const [ci, p] of profiles.entries()) {
    const stem = fileStem(ci, p.path);
    const files = { firing: `${stem}.firing.npy`, experts: null as string | null };
    const fire = flat(firing[ci], new Float32Array(L * d_ff));
    await writeFileAtomic(resolve(out, files.firing), npyBytes(fire, [L, d_ff]));
    if (labels) {
      files.experts = `${stem}.experts.npy`;
      const lab = flat(labels[ci], new Int32Array(L * d_ff));
      await writeFileAtomic(resolve(out, files.experts), npyBytes(lab, [L, d_ff]));
    }
    p.files = files;
  }
}

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
