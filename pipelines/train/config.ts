/**
 * `ssd train` config: defaults, presets and resolution (defaults ← preset ←
 * `--config` file ← flags). Flat, nanoGPT-style: every knob in one place.
 */
import { ConfigError } from "../../core/errors.ts";
import { type GPTConfig, MODEL_PRESETS, validateConfig } from "../../core/nn/config.ts";
import { type FlatConfig, mergeConfig, readConfigFile } from "../config.ts";
import { DEFAULT_SCHEDULE_CONFIG } from "./schedule.ts";

/** Everything a training run needs; saved in each checkpoint's `ssd.train`. */
export interface TrainConfig extends FlatConfig {
  /** Preset the values started from: "default" or "tiny". */
  preset: string;
  /** Vocabulary size (256: byte tokens). */
  vocab: number;
  /** Context length T of training windows. */
  ctx: number;
  /** Residual width C. */
  d_model: number;
  /** Transformer blocks. */
  n_layer: number;
  /** Attention heads (divides d_model). */
  n_head: number;
  /** FFN width. */
  d_ff: number;
  /** Biases in Linear and LayerNorm. */
  bias: boolean;
  /** FFN activation: relu or gelu. */
  activation: string;
  /** Sequences per step B. */
  batch_size: number;
  /** Optimizer steps (ignored when `tokens` is set). */
  steps: number;
  /** Train for this many tokens instead of `steps` (steps = ceil(tokens / (B·T))). */
  tokens: number | null;
  /** Peak learning rate. */
  lr: number;
  /** Floor of the cosine decay. */
  min_lr: number;
  /** Linear warmup steps. */
  warmup: number;
  /** AdamW decoupled weight decay (matrices and embeddings only). */
  weight_decay: number;
  /** AdamW β1. */
  beta1: number;
  /** AdamW β2 (0.99, as nanoGPT for small byte-level runs). */
  beta2: number;
  /** Global gradient-norm clip (0 = off). */
  grad_clip: number;
  /** Evaluate validation loss every N steps (0 = only at the end). */
  eval_every: number;
  /** Validation tokens per evaluation during training (the first N of the split). */
  eval_tokens: number;
  /** Windows per forward when evaluating. */
  eval_batch: number;
  /** Validation tokens of the final evaluation; null = the whole validation split. */
  val_tokens: number | null;
  /** Save `ckpt-<step>.safetensors` every N steps (0 = only final). */
  save_every: number;
  /** Seed of initialisation and data order. */
  seed: number;
  /** Output folder: checkpoints and metrics.jsonl. */
  out: string;
  /** Text file or folder of .txt files; null = the embedded Brown corpus. */
  data: string | null;
  /** Validation text; null = the held-out split of `data`. */
  val: string | null;
  /** Training schedule (SPEC 6): dense, sparse (static MoE from sparse_from) or ssd (switching). */
  schedule: string;
  /** Experts per FFN layer in sparse phases (divides d_ff). */
  experts: number;
  /** Experts per token in sparse phases; null = experts / 4. */
  top_k: number | null;
  /** Dense phase: steps between partition-stability checks. */
  monitor_every: number;
  /** Partition similarity (ARI) at or above which a check counts as stable. */
  stable_threshold: number;
  /** Stable checks in a row that switch to sparse. */
  patience: number;
  /** Steps of one sparse phase. */
  sparse_steps: number;
  /** Last steps that are always dense; null = 10% of the run. */
  final_dense: number | null;
  /** `--schedule sparse`: step of the one switch to sparse; null = 10% of the run. */
  sparse_from: number | null;
  /** A fresh k-means start replaces the warm one only when better by this share of inertia. */
  fresh_margin: number;
}

/** Training defaults: the config `deno task train` runs with no flags. */
export const DEFAULT_TRAIN_CONFIG: Readonly<TrainConfig> = Object.freeze({
  preset: "default",
  ...MODEL_PRESETS.default,
  batch_size: 8,
  steps: 2000,
  tokens: null,
  lr: 2e-3,
  min_lr: 2e-4,
  warmup: 100,
  weight_decay: 0.1,
  beta1: 0.9,
  beta2: 0.99,
  grad_clip: 1.0,
  eval_every: 250,
  eval_tokens: 16384,
  eval_batch: 64,
  val_tokens: null,
  save_every: 500,
  seed: 1337,
  out: "runs/train",
  data: null,
  val: null,
  // The schedule's own defaults (SPEC 6); plain training unless asked.
  ...DEFAULT_SCHEDULE_CONFIG,
  schedule: "dense",
});

/** Overrides each preset applies on top of the defaults. */
export const TRAIN_PRESETS: Readonly<Record<string, Partial<TrainConfig>>> = Object.freeze({
  default: {},
  tiny: {
    ...MODEL_PRESETS.tiny,
    batch_size: 8,
    steps: 200,
    warmup: 20,
    lr: 3e-3,
    min_lr: 3e-4,
    eval_every: 100,
    eval_tokens: 4096,
    save_every: 100,
  },
});

const TYPES: Partial<Record<keyof TrainConfig, string>> = {
  tokens: "number",
  data: "string",
  val: "string",
  top_k: "number",
  val_tokens: "number",
  final_dense: "number",
  sparse_from: "number",
};

/** The model part of a train config. */
export function modelConfigOf(c: TrainConfig): GPTConfig {
  return validateConfig({
    vocab: c.vocab,
    ctx: c.ctx,
    d_model: c.d_model,
    n_layer: c.n_layer,
    n_head: c.n_head,
    d_ff: c.d_ff,
    bias: c.bias,
    activation: c.activation as GPTConfig["activation"],
  });
}

function checkRange(c: TrainConfig): void {
  const pos = ["batch_size", "steps", "eval_tokens", "eval_batch"] as const;
  for (const k of pos) {
    if (!Number.isInteger(c[k]) || c[k] < 1) {
      throw new ConfigError(`--${k.replaceAll("_", "-")} must be a positive integer, got ${c[k]}`);
    }
  }
  const nonneg = ["warmup", "eval_every", "save_every", "seed"] as const;
  for (const k of nonneg) {
    if (!Number.isInteger(c[k]) || c[k] < 0) {
      throw new ConfigError(
        `--${k.replaceAll("_", "-")} must be a non-negative integer, got ${c[k]}`,
      );
    }
  }
  for (const k of ["lr", "min_lr", "weight_decay", "grad_clip"] as const) {
    if (!(c[k] >= 0) || !Number.isFinite(c[k])) {
      throw new ConfigError(`--${k.replaceAll("_", "-")} must be a number >= 0, got ${c[k]}`);
    }
  }
  if (c.min_lr > c.lr) throw new ConfigError(`--min-lr ${c.min_lr} is above --lr ${c.lr}`);
  for (const k of ["beta1", "beta2"] as const) {
    if (!(c[k] >= 0 && c[k] < 1)) throw new ConfigError(`--${k} must be in [0, 1), got ${c[k]}`);
  }
  if (c.tokens !== null && (!Number.isInteger(c.tokens) || c.tokens < 1)) {
    throw new ConfigError(`--tokens must be a positive integer, got ${c.tokens}`);
  }
  if (c.vocab !== 256) {
    throw new ConfigError(`--vocab must be 256 with the byte-level tokenizer, got ${c.vocab}`);
  }
  if (!c.out) throw new ConfigError("--out must name a folder");
}

/**
 * Resolves a train config: defaults ← preset ← config file ← flags.
 * `flags` holds only the keys the user gave (snake_case).
 */
export async function resolveTrainConfig(
  flags: Record<string, unknown>,
  configFile?: string,
): Promise<TrainConfig> {
  const file = configFile ? await readConfigFile(configFile) : {};
  const presetName = (flags.preset ?? file.preset ?? "default") as string;
  const preset = TRAIN_PRESETS[presetName];
  if (!preset) {
    throw new ConfigError(
      `Unknown preset "${presetName}": choose one of ${Object.keys(TRAIN_PRESETS).join(", ")}`,
    );
  }
  let c = mergeConfig(DEFAULT_TRAIN_CONFIG, { ...preset, preset: presetName }, "preset", TYPES);
  c = mergeConfig(c, file, configFile ?? "config file", TYPES);
  c = mergeConfig(c, flags, "flags", TYPES);
  checkRange(c);
  modelConfigOf(c);
  if (c.tokens !== null) c.steps = Math.ceil(c.tokens / (c.batch_size * c.ctx));
  return c;
}
