/**
 * `ssd train` config: defaults, presets and resolution (defaults ← preset ←
 * `--config` file ← flags). Flat, nanoGPT-style: every knob in one place.
 */
import { ConfigError } from "../../core/errors.ts";
import { type GPTConfig, MODEL_PRESETS, validateConfig } from "../../core/nn/config.ts";
import { flagOf, type FlatConfig, mergeConfig, readConfigFile } from "../config.ts";
import { DEFAULT_SCHEDULE_CONFIG, type ScheduleConfig } from "./schedule.ts";

/** The optimizer and its learning-rate schedule (AdamW, warmup + cosine). */
export interface OptimizerConfig {
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
}

/** Optimizer defaults. */
export const DEFAULT_OPTIMIZER_CONFIG: Readonly<OptimizerConfig> = Object.freeze({
  lr: 2e-3,
  min_lr: 2e-4,
  warmup: 100,
  weight_decay: 0.1,
  beta1: 0.9,
  beta2: 0.99,
  grad_clip: 1.0,
});

/** What a run trains on, for how long, and what it writes. */
export interface RunConfig {
  /** Preset the values started from: "default" or "tiny". */
  preset: string;
  /** Sequences per step B. */
  batch_size: number;
  /** Optimizer steps (computed from `tokens` when that is set). */
  steps: number;
  /** Train for this many tokens instead of `steps` (steps = ceil(tokens / (B·T))). */
  tokens: number | null;
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
}

/** Run defaults. */
export const DEFAULT_RUN_CONFIG: Readonly<RunConfig> = Object.freeze({
  preset: "default",
  batch_size: 8,
  steps: 2000,
  tokens: null,
  eval_every: 250,
  eval_tokens: 16384,
  eval_batch: 64,
  val_tokens: null,
  save_every: 500,
  seed: 1337,
  out: "runs/train",
  data: null,
  val: null,
});

/**
 * Everything a training run needs, flat (nanoGPT-style): the model, the
 * schedule, the optimizer and the run; saved in each checkpoint's `ssd.train`.
 */
export interface TrainConfig
  extends FlatConfig, GPTConfig, ScheduleConfig, OptimizerConfig, RunConfig {}

/** Training defaults: the config `deno task train` runs with no flags. */
export const DEFAULT_TRAIN_CONFIG: Readonly<TrainConfig> = Object.freeze({
  ...DEFAULT_RUN_CONFIG,
  ...MODEL_PRESETS.default,
  ...DEFAULT_OPTIMIZER_CONFIG,
  // The schedule's own defaults; plain training unless asked.
  ...DEFAULT_SCHEDULE_CONFIG,
  schedule: "dense",
});

/** The keys of `defaults` picked from `c`: a slice of the flat config. */
function slice<T extends object>(c: TrainConfig, defaults: Readonly<T>): T {
  return Object.fromEntries(Object.keys(defaults).map((k) => [k, c[k]])) as T;
}

/** The model part of a train config, validated. */
export function modelConfigOf(c: TrainConfig): GPTConfig {
  return validateConfig(slice(c, MODEL_PRESETS.default));
}

/** The schedule part of a train config. */
export function scheduleConfigOf(c: TrainConfig): ScheduleConfig {
  return slice(c, DEFAULT_SCHEDULE_CONFIG);
}

/** The optimizer part of a train config. */
export function optimizerConfigOf(c: TrainConfig): OptimizerConfig {
  return slice(c, DEFAULT_OPTIMIZER_CONFIG);
}

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

/** Types of the keys whose default is null (for `mergeConfig`). */
export const TRAIN_CONFIG_TYPES: Partial<Record<keyof TrainConfig, string>> = {
  tokens: "number",
  data: "string",
  val: "string",
  top_k: "number",
  val_tokens: "number",
  final_dense: "number",
  sparse_from: "number",
};

function checkRange(c: TrainConfig): void {
  const pos = ["batch_size", "steps", "eval_tokens", "eval_batch"] as const;
  for (const k of pos) {
    if (!Number.isInteger(c[k]) || c[k] < 1) {
      throw new ConfigError(`${flagOf(k)} must be a positive integer, got ${c[k]}`);
    }
  }
  const nonneg = ["warmup", "eval_every", "save_every", "seed"] as const;
  for (const k of nonneg) {
    if (!Number.isInteger(c[k]) || c[k] < 0) {
      throw new ConfigError(
        `${flagOf(k)} must be a non-negative integer, got ${c[k]}`,
      );
    }
  }
  for (const k of ["lr", "min_lr", "weight_decay", "grad_clip"] as const) {
    if (!(c[k] >= 0) || !Number.isFinite(c[k])) {
      throw new ConfigError(`${flagOf(k)} must be a number >= 0, got ${c[k]}`);
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
 * Checks a merged config and derives `steps` from `tokens`; every error is
 * one `ConfigError` line naming the flag.
 */
export function checkTrainConfig(c: TrainConfig): TrainConfig {
  checkRange(c);
  modelConfigOf(c);
  if (c.tokens !== null) c.steps = Math.ceil(c.tokens / (c.batch_size * c.ctx));
  return c;
}

/** Refuses `--tokens` with `--steps` from the same source (one would silently win). */
export function checkLength(o: Record<string, unknown>, source: string): void {
  if (o.tokens !== undefined && o.tokens !== null && o.steps !== undefined) {
    throw new ConfigError(`Give --tokens or --steps, not both (in ${source})`);
  }
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
  checkLength(file, configFile ?? "config file");
  checkLength(flags, "flags");
  const presetName = (flags.preset ?? file.preset ?? "default") as string;
  const preset = TRAIN_PRESETS[presetName];
  if (!preset) {
    throw new ConfigError(
      `Unknown preset "${presetName}": choose one of ${Object.keys(TRAIN_PRESETS).join(", ")}`,
    );
  }
  let c = mergeConfig(
    DEFAULT_TRAIN_CONFIG,
    { ...preset, preset: presetName },
    "preset",
    TRAIN_CONFIG_TYPES,
  );
  // A length from a later source replaces the earlier one's, whichever way it is given.
  const later = (o: Record<string, unknown>) => o.steps !== undefined || o.tokens !== undefined;
  if (later(file)) c = { ...c, tokens: null };
  c = mergeConfig(c, file, configFile ?? "config file", TRAIN_CONFIG_TYPES);
  if (later(flags)) c = { ...c, tokens: null };
  c = mergeConfig(c, flags, "flags", TRAIN_CONFIG_TYPES);
  return checkTrainConfig(c);
}
