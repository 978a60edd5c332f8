/**
 * `ssd eval`: the deterministic evaluation protocol on a checkpoint. Every
 * token of `--data` (a text file or a folder of `.txt` files, all of it, no
 * split) or, without `--data`, of the embedded Brown Corpus's validation
 * split is scored once, in consecutive windows of ctx tokens
 * (`evaluateTokens`).
 *
 * The text is scored in chunks of whole windows so that long runs can report
 * progress: a chunk starts on a window boundary and carries the one token of
 * overlap its first window needs as context, so the windows (and the scored
 * tokens) are exactly those of one pass over the whole text. Each chunk costs
 * one host wait.
 */
import { ConfigError } from "../core/errors.ts";
import { loadGPT } from "../core/nn/gpt_checkpoint.ts";
import { autotuneMatmul } from "../gpu/autotune.ts";
import { initGpu } from "../gpu/runtime.ts";
import { type EvalResult, evaluateTokens } from "../core/nn/token_nll.ts";
import {
  checkForwardFits,
  expertsPerToken,
  loadEvalTokens,
  refuseTopKWithDense,
  requireByteTokenizer,
  requirePositiveInt,
} from "./checks.ts";

/** Windows scored per chunk (one host wait and one progress report each). */
export const EVAL_CHUNK_WINDOWS = 256;

/** What `ssd eval` evaluates, and how. */
export interface EvalConfig {
  /** The checkpoint (.safetensors) to evaluate. */
  checkpoint: string;
  /** Text file or folder of `.txt` files, all of it scored; null: Brown validation split. */
  data: string | null;
  /** Windows of ctx tokens per forward pass. */
  batch: number;
  /** Experts per token for an MoE checkpoint; null: the checkpoint's top_k. */
  top_k?: number | null;
  /** Evaluate an MoE checkpoint with all its experts. */
  dense?: boolean;
}

/** Defaults of every `EvalConfig` field but the checkpoint. */
export const DEFAULT_EVAL_CONFIG: Readonly<Omit<EvalConfig, "checkpoint">> = Object.freeze({
  data: null,
  batch: 16,
});

/** What `runEval` returns: nll, bpb, ppl, tokens, top_k, plus where they came from. */
export interface EvalReport extends EvalResult {
  /** Experts per token for an MoE checkpoint; null when evaluated dense. */
  top_k: number | null;
  /** The checkpoint evaluated. */
  checkpoint: string;
  /** The text scored (a path, or the embedded corpus's validation split). */
  source: string;
  /** Model context length (the window size). */
  ctx: number;
}

/** Progress hooks of `runEval`. */
export interface EvalHooks {
  /** After each chunk: targets scored so far, of `total`. */
  onProgress?(done: number, total: number): void;
}

/**
 * Scores every token of the eval text with the checkpoint's model.
 *
 * The data is read (and rejected when too short) before the GPU is opened or
 * the checkpoint loaded, so bad input fails fast.
 *
 * @throws ConfigError for a bad batch or data path, fewer than 2 tokens, `--top-k`
 *   with `--dense`, or a batch whose forward exceeds the adapter's buffers
 * @throws CheckpointError for a missing, corrupt or non-byte-level checkpoint
 * @throws GpuError when there is no WebGPU adapter
 */
export async function runEval(config: EvalConfig, hooks: EvalHooks = {}): Promise<EvalReport> {
  requirePositiveInt("--batch", config.batch);
  refuseTopKWithDense(config);
  const { tokens, source } = loadEvalTokens(config.data);
  if (tokens.length < 2) {
    throw new ConfigError(
      `Eval data ${source} has ${tokens.length} token: need at least 2 (one context, one scored)`,
    );
  }
  const g = await initGpu();
  // Picks the matmul kernels for this adapter (a cached choice after the first run).
  await autotuneMatmul(g);
  const loaded = await loadGPT(config.checkpoint);
  try {
    requireByteTokenizer(loaded, config.checkpoint);
    const topK = expertsPerToken(loaded, config);
    const ctx = loaded.config.ctx;
    const total = tokens.length - 1;
    // A forward holds at most as many windows as the text has.
    const windows = Math.min(config.batch, Math.ceil(total / ctx));
    checkForwardFits("--batch", windows, ctx, loaded.config, g.dev.summary.limits);
    const span = EVAL_CHUNK_WINDOWS * ctx;
    let sum = 0;
    let count = 0;
    for (let start = 0; start < total; start += span) {
      // `span` inputs plus the next window's first token as the last target.
      const chunk = tokens.subarray(start, Math.min(tokens.length, start + span + 1));
      const r = await evaluateTokens(loaded.model, chunk, config.batch, topK ?? undefined);
      sum += r.nll * r.tokens;
      count += r.tokens;
      hooks.onProgress?.(count, total);
    }
    const nll = sum / count;
    return {
      nll,
      bpb: nll / Math.LN2,
      ppl: Math.exp(nll),
      tokens: count,
      top_k: topK,
      checkpoint: config.checkpoint,
      source,
      ctx,
    };
  } finally {
    loaded.model.release();
  }
}
