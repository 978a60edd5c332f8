/**
 * `ssd generate`: autoregressive sampling from a checkpoint, one byte token
 * per step, with the KV-cache decoder of core/nn/decode.ts (B = 1): the
 * prompt is prefilled once, each further token is one cached step, and past
 * the model's ctx the context is cropped to the last ctx tokens as nanoGPT's
 * `generate` does. Sampling (temperature, top-k) runs on the GPU with a
 * counter-based RNG of (seed, step), so the same seed gives the same text;
 * tokens are read back in chunks, one host wait per chunk, not per token.
 */
import { ConfigError } from "../core/errors.ts";
import { Decoder, DEFAULT_SAMPLING, type Generation } from "../core/nn/decode.ts";
import { loadGPT } from "../core/nn/gpt_checkpoint.ts";
import type { GPT } from "../core/nn/gpt.ts";
import { encode } from "../core/tokenizer.ts";
import { autotuneMatmul } from "../gpu/autotune.ts";
import { initGpu } from "../gpu/runtime.ts";
import {
  checkGenerateFits,
  expertsPerToken,
  refuseTopKWithDense,
  requireByteTokenizer,
} from "./checks.ts";

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
  temperature: DEFAULT_SAMPLING.temperature,
  sample_top_k: DEFAULT_SAMPLING.topK,
  seed: DEFAULT_SAMPLING.seed,
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

/** Tokens recorded per read-back while streaming (one host wait each). */
export const GENERATE_CHUNK = 32;

/**
 * Generates `tokens` tokens continuing `prompt` with an already loaded model,
 * yielding each token (a byte). The tokens are decoded with the KV cache and
 * sampled on the GPU (core/nn/decode.ts), recorded `GENERATE_CHUNK` at a time
 * and read back once per chunk, so the stream arrives in bursts. Everything
 * the decoder allocates is released when the stream ends, also early.
 */
export async function* generateTokens(
  model: GPT,
  config: Omit<GenerateConfig, "checkpoint">,
  topK?: number,
): AsyncGenerator<number> {
  validateGenerateConfig({ ...config, checkpoint: "" }, model.config.vocab);
  const decoder = new Decoder(model, 1, { topK });
  let run: Generation | null = null;
  try {
    run = decoder.start([encode(config.prompt)], config.tokens, {
      temperature: config.temperature,
      topK: config.sample_top_k,
      seed: config.seed,
    });
    while (run.done < run.length) {
      const from = run.done;
      run.advance(Math.min(GENERATE_CHUNK, run.length - from));
      const [tokens] = await run.read(from, run.done);
      yield* tokens;
    }
  } finally {
    run?.release();
    decoder.release();
  }
}

/**
 * Loads the checkpoint and streams generated tokens (bytes); the model is
 * released when the stream ends, also when the consumer stops early.
 *
 * The config is checked before the GPU is opened; top-k against the vocab
 * once the checkpoint is read.
 *
 * @throws ConfigError for an empty prompt, a negative temperature, a bad top-k,
 *   `--top-k` with `--dense`, more tokens than the adapter's buffers hold
 * @throws CheckpointError for a missing, corrupt or non-byte-level checkpoint
 */
export async function* runGenerate(config: GenerateConfig): AsyncGenerator<number> {
  validateGenerateConfig(config);
  refuseTopKWithDense(config);
  const g = await initGpu();
  checkGenerateFits(encode(config.prompt).length, config.tokens, g.dev.summary.limits);
  // Picks the matmul kernels for this adapter (a cached choice after the first run).
  await autotuneMatmul(g);
  const loaded = await loadGPT(config.checkpoint);
  try {
    requireByteTokenizer(loaded, config.checkpoint);
    const topK = expertsPerToken(loaded, { ...config, top_k: config.top_k ?? null });
    yield* generateTokens(loaded.model, config, topK ?? undefined);
  } finally {
    loaded.model.release();
  }
}
