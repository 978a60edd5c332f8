/**
 * `ssd generate`: autoregressive sampling from a checkpoint, one byte token
 * per step.
 *
 * Each step runs one forward of the prefix (B = 1, cropped to the model's
 * last ctx tokens, as nanoGPT's `generate`) and reads back only the last row
 * of the logits, V floats, with one host wait; sampling (temperature, top-k)
 * happens on the host with the seeded `Rng`, so the same seed gives the same
 * text. Every step runs in its own scope, so nothing it allocates outlives it.
 */
import { ConfigError } from "../core/errors.ts";
import { loadGPT } from "../core/nn/gpt_checkpoint.ts";
import type { GPT } from "../core/nn/gpt.ts";
import { Rng } from "../core/rng.ts";
import { tidyAsync } from "../core/scope.ts";
import { noGrad } from "../core/tape.ts";
import { tensor } from "../core/tensor.ts";
import { encode } from "../core/tokenizer.ts";
import { autotuneMatmul } from "../gpu/autotune.ts";
import { gpu, initGpu } from "../gpu/runtime.ts";
import { expertsPerToken, requireByteTokenizer } from "./eval.ts";

/** What `ssd generate` samples, and how. */
export interface GenerateConfig {
  /** The checkpoint (.safetensors) to sample from. */
  checkpoint: string;
  /** Text the sample continues (must not be empty). */
  prompt: string;
  /** Tokens (bytes) to generate. */
  tokens: number;
  /** Softmax temperature; 0 = greedy (argmax, ties to the lower id). */
  temperature: number;
  /** Sample among the k most likely tokens; 0 = all of the vocab. */
  sample_top_k: number;
  /** RNG seed: the same seed gives the same text. */
  seed: number;
  /** Experts per token for an MoE checkpoint; null/absent: its top_k. */
  top_k?: number | null;
  /** Run an MoE checkpoint with all experts. */
  dense?: boolean;
}

/** Defaults of every `GenerateConfig` field but the checkpoint and prompt. */
export const DEFAULT_GENERATE_CONFIG: Readonly<
  Omit<GenerateConfig, "checkpoint" | "prompt">
> = Object.freeze({
  tokens: 200,
  temperature: 0.8,
  sample_top_k: 40,
  seed: 1337,
});

/** Checks the fields that do not need the model; `vocab` bounds top-k when known. */
export function validateGenerateConfig(c: GenerateConfig, vocab?: number): void {
  if (c.prompt.length === 0) {
    throw new ConfigError(
      "--prompt is empty: give some text to continue (byte-level models need at least one byte)",
    );
  }
  if (!(Number.isSafeInteger(c.tokens) && c.tokens >= 0)) {
    throw new ConfigError(`--tokens must be a non-negative integer, got ${c.tokens}`);
  }
  if (!(Number.isFinite(c.temperature) && c.temperature >= 0)) {
    throw new ConfigError(
      `--temperature must be a finite number >= 0 (0 = greedy), got ${c.temperature}`,
    );
  }
  if (!(Number.isSafeInteger(c.sample_top_k) && c.sample_top_k >= 0)) {
    throw new ConfigError(
      `--sample-top-k must be a non-negative integer (0 = all), got ${c.sample_top_k}`,
    );
  }
  if (vocab !== undefined && c.sample_top_k > vocab) {
    throw new ConfigError(
      `--sample-top-k ${c.sample_top_k} is larger than the model's vocab of ${vocab}: give 1..${vocab}, or 0 ` +
        `for all`,
    );
  }
  if (!Number.isSafeInteger(c.seed)) {
    throw new ConfigError(`--seed must be an integer, got ${c.seed}`);
  }
}

/**
 * Picks the next token from one row of logits.
 *
 * temperature 0: argmax (first maximum). Otherwise the `topK` largest logits
 * (all when 0; ties at the cut go to the lower id) are turned into
 * probabilities softmax(logit / temperature), in float64, and one is drawn
 * with `rng.uniform()` by inverse CDF in id order.
 */
export function sampleToken(
  logits: Float32Array,
  temperature: number,
  topK: number,
  rng: Rng,
): number {
  const V = logits.length;
  if (temperature === 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }
  let keep: number[];
  if (topK === 0 || topK >= V) keep = Array.from({ length: V }, (_, i) => i);
  else {
    const order = Array.from({ length: V }, (_, i) => i);
    order.sort((a, b) => logits[b] - logits[a] || a - b);
    keep = order.slice(0, topK).sort((a, b) => a - b);
  }
  let max = -Infinity;
  for (const i of keep) max = Math.max(max, logits[i]);
  const p = keep.map((i) => Math.exp((logits[i] - max) / temperature));
  let total = 0;
  for (const x of p) total += x;
  let u = rng.uniform() * total;
  for (let j = 0; j < keep.length; j++) {
    u -= p[j];
    if (u < 0) return keep[j];
  }
  return keep[keep.length - 1]; // u landed on the rounding error at the top
}

/**
 * Runs one forward of `context` (B = 1) and returns the last position's
 * logits, read back as V floats with one host wait. Everything the forward
 * allocates is released before returning.
 */
export function lastLogits(
  model: GPT,
  context: Uint32Array,
  topK?: number,
): Promise<Float32Array> {
  const V = model.config.vocab;
  const T = context.length;
  return tidyAsync(async () => {
    const tokens = tensor(context, [1, T], { dtype: "u32" });
    const out = noGrad(() => model.forward(tokens, undefined, { topK }));
    const bytes = await gpu().recorder.read(out.logits.buffer, (T - 1) * V * 4, V * 4); // (V)
    return new Float32Array(bytes);
  });
}

/**
 * Generates `tokens` tokens continuing `prompt` with an already loaded model,
 * yielding each token (a byte) as soon as it is sampled.
 */
export async function* generateTokens(
  model: GPT,
  config: Omit<GenerateConfig, "checkpoint">,
  topK?: number,
): AsyncGenerator<number> {
  validateGenerateConfig({ ...config, checkpoint: "" }, model.config.vocab);
  const ctx = model.config.ctx;
  const rng = new Rng(config.seed);
  const seq = Array.from(encode(config.prompt));
  for (let i = 0; i < config.tokens; i++) {
    const context = Uint32Array.from(seq.slice(-ctx));
    const logits = await lastLogits(model, context, topK);
    const next = sampleToken(logits, config.temperature, config.sample_top_k, rng);
    seq.push(next);
    yield next;
  }
}

/**
 * Loads the checkpoint and streams generated tokens (bytes); the model is
 * released when the stream ends, also when the consumer stops early.
 *
 * The config is checked before the GPU is opened; top-k against the vocab
 * once the checkpoint is read.
 *
 * @throws ConfigError for an empty prompt, a negative temperature, a bad top-k
 * @throws CheckpointError for a missing, corrupt or non-byte-level checkpoint
 */
export async function* runGenerate(config: GenerateConfig): AsyncGenerator<number> {
  validateGenerateConfig(config);
  // Picks the matmul kernels for this adapter (a cached choice after the first run).
  await autotuneMatmul(await initGpu());
  const loaded = await loadGPT(config.checkpoint);
  try {
    requireByteTokenizer(loaded, config.checkpoint);
    const topK = expertsPerToken(loaded, { ...config, top_k: config.top_k ?? null });
    yield* generateTokens(loaded.model, config, topK ?? undefined);
  } finally {
    loaded.model.release();
  }
}
