/**
 * Checks and inputs shared by several subcommands (eval, generate, bench,
 * profile): flag validators, the byte-tokenizer requirement on a loaded
 * checkpoint, the experts-per-token rule of `--top-k` / `--dense`, and the
 * eval text. One module, so that no subcommand imports another's pipeline.
 */
import { BROWN_SOURCE } from "../core/corpus_brown.ts";
import { loadAllText, loadBrownDataset } from "../core/data.ts";
import { CheckpointError, ConfigError } from "../core/errors.ts";
import type { LoadedGPT } from "../core/nn/gpt_checkpoint.ts";
import { checkExperts } from "../core/nn/moe_layout.ts";
import { tokenizerFromId, VOCAB_SIZE } from "../core/tokenizer.ts";

/** The `--top-k` / `--dense` flags of a subcommand that runs a checkpoint. */
export interface ExpertFlags {
  /** The checkpoint, for messages. */
  checkpoint: string;
  /** Experts per token; null or missing: the checkpoint's top_k. */
  top_k?: number | null;
  /** Run an MoE checkpoint with all its experts. */
  dense?: boolean;
}

/**
 * Refuses `--top-k` together with `--dense` (one asks for k experts, the
 * other for all of them), before anything is loaded.
 *
 * @throws ConfigError when both are given
 */
export function refuseTopKWithDense(config: ExpertFlags): void {
  if (config.dense && config.top_k !== undefined && config.top_k !== null) {
    throw new ConfigError(
      `--top-k ${config.top_k} and --dense contradict each other: --dense runs all experts; ` +
        `give one of them`,
    );
  }
}

/** The eval text: all of `data`, or the embedded corpus's validation split. */
export function loadEvalTokens(data: string | null): { tokens: Uint8Array; source: string } {
  if (data !== null) return loadAllText(data, "--data");
  return { tokens: loadBrownDataset().val, source: `${BROWN_SOURCE} (validation split)` };
}

/**
 * Checks that a loaded checkpoint reads byte tokens: its tokenizer (when
 * recorded) is one we know and its vocab is the byte vocabulary.
 *
 * @throws CheckpointError naming the checkpoint and what differs
 */
export function requireByteTokenizer(loaded: Pick<LoadedGPT, "config" | "train">, path: string) {
  const id = loaded.train?.tokenizer;
  if (typeof id === "string") tokenizerFromId(id);
  if (loaded.config.vocab !== VOCAB_SIZE) {
    throw new CheckpointError(
      `Checkpoint ${path} has vocab ${loaded.config.vocab}, but the byte tokenizer has ` +
        `${VOCAB_SIZE} tokens: use a checkpoint trained on byte tokens`,
    );
  }
}

/** Positive-integer check shared by the pipelines' configs. */
export function requirePositiveInt(name: string, v: number): void {
  if (!(Number.isSafeInteger(v) && v >= 1)) {
    throw new ConfigError(`${name} must be a positive integer, got ${v}`);
  }
}

/**
 * Experts per token for `--top-k` / `--dense`: null for a dense
 * evaluation; for an MoE checkpoint its own top_k unless told otherwise.
 *
 * @throws ConfigError when --top-k is given for a dense checkpoint or exceeds the experts
 */
export function expertsPerToken(
  loaded: Pick<LoadedGPT, "moe" | "config">,
  config: ExpertFlags,
): number | null {
  const moe = loaded.moe;
  const k = config.top_k ?? null;
  if (!moe) {
    if (k !== null) {
      throw new ConfigError(
        `--top-k needs an MoE checkpoint, and ${config.checkpoint} is dense: MoE-fy it with ssd moefy`,
      );
    }
    return null;
  }
  if (config.dense) return null;
  checkExperts(moe.experts, k, loaded.config.d_ff);
  return k ?? moe.top_k;
}

/** The largest buffer one binding can see on this device: min of the two adapter limits. */
export function bindingLimit(
  limits: { maxStorageBufferBindingSize?: number; maxBufferSize?: number },
): { bytes: number; name: string } {
  const binding = limits.maxStorageBufferBindingSize ?? Infinity;
  const buffer = limits.maxBufferSize ?? Infinity;
  return binding <= buffer
    ? { bytes: binding, name: "maxStorageBufferBindingSize" }
    : { bytes: buffer, name: "maxBufferSize" };
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/**
 * Refuses a generation whose token buffer (prompt + generated tokens, 4
 * bytes each) exceeds the device's binding limit, naming the limit and the
 * largest `--tokens` that fits.
 *
 * @throws ConfigError when it does not fit
 */
export function checkGenerateFits(
  promptTokens: number,
  tokens: number,
  limits: Record<string, number>,
): void {
  const limit = bindingLimit(limits);
  const bytes = 4 * (promptTokens + tokens);
  if (bytes <= limit.bytes) return;
  const most = Math.max(0, Math.floor(limit.bytes / 4) - promptTokens);
  throw new ConfigError(
    `--tokens ${tokens} needs a token buffer of ${mib(bytes)} (prompt + tokens, 4 bytes each), ` +
      `above this adapter's ${limit.name} of ${mib(limit.bytes)}: give --tokens ${most} or less`,
  );
}

/** The model sizes that bound a forward's largest tensor. */
export interface ForwardShape {
  /** Vocabulary (logits per position). */
  vocab: number;
  /** FFN width. */
  d_ff: number;
  /** Model width. */
  d_model: number;
  /** Attention heads. */
  n_head: number;
}

/**
 * f32 values per window of T positions of a forward's largest tensors:
 * logits (T, V), FFN activations (T, d_ff), attention probabilities
 * (H, T, T) and q/k/v (T, 3C). Training and evaluation check these alike.
 */
export function forwardTensorSizes(
  c: ForwardShape,
  T: number,
): { logits: number; ffn: number; attention: number; qkv: number } {
  return {
    logits: T * c.vocab,
    ffn: T * c.d_ff,
    attention: c.n_head * T * T,
    qkv: T * 3 * c.d_model,
  };
}

/**
 * Refuses a forward of `batch` windows of T positions whose largest f32
 * tensor, (B, T, V) logits, (B, T, d_ff) FFN activations, (B, H, T, T)
 * attention probabilities or (B, T, 3C) q/k/v, exceeds the device's binding
 * limit, naming the tensor, the limit and the largest batch that fits.
 *
 * @throws ConfigError when it does not fit
 */
export function checkForwardFits(
  flag: string,
  batch: number,
  T: number,
  c: ForwardShape,
  limits: Record<string, number>,
): void {
  const limit = bindingLimit(limits);
  const s = forwardTensorSizes(c, T);
  const perWindow: [string, number][] = [
    ["(B, T, V) logits", s.logits],
    ["(B, T, d_ff) FFN activations", s.ffn],
    ["(B, H, T, T) attention probabilities", s.attention],
    ["(B, T, 3C) q/k/v", s.qkv],
  ];
  const [what, values] = perWindow.reduce((a, b) => (b[1] > a[1] ? b : a));
  const bytes = 4 * values * batch;
  if (bytes <= limit.bytes) return;
  const most = Math.floor(limit.bytes / (4 * values));
  throw new ConfigError(
    `${flag} ${batch} needs a ${what} tensor of ${mib(bytes)}, above this adapter's ` +
      `${limit.name} of ${mib(limit.bytes)}: give ${flag} ${most} or less`,
  );
}
