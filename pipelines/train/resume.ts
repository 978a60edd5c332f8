/**
 * What `ssd train --resume` continues with: the saved config with the
 * flags (and `--config` file) given now on top. What would change the
 * model, the data order or the kind of schedule cannot apply to a run under
 * way and is refused; the rest applies and is listed, because the run then
 * no longer reproduces an uninterrupted one. `--steps` may lengthen the run:
 * the learning rate and the SSD plan are re-planned for the new length
 * (see `RESUME_RULE`).
 */
import { dirname } from "node:path";
import { ConfigError } from "../../core/errors.ts";
import { flagOf, mergeConfig, readConfigFile } from "../config.ts";
import {
  checkLength,
  checkTrainConfig,
  DEFAULT_TRAIN_CONFIG,
  TRAIN_CONFIG_TYPES,
  type TrainConfig,
} from "./config.ts";
import { resumeCheckpoint, type RunCheckpoint } from "./run_folder.ts";
import { parseTrainState, type TrainState } from "./state.ts";

/** The resume rule, as `ssd train --help` states it. */
export const RESUME_RULE =
  "--resume DIR continues the run in DIR (or --out) under its saved config. Flags that shape " +
  "the model, the data order or the kind of schedule (--preset, --d-model, --n-layer, " +
  "--no-bias, --activation, --batch-size, --seed, --data, --schedule, --experts, --top-k...) " +
  "cannot change. Other flags (--lr, --warmup, --eval-every, --save-every, schedule " +
  "thresholds...) apply from the resume step on, and the run lists what changed. --steps " +
  "below the saved step is refused; beyond the planned length it extends the run: the " +
  "learning rate decays from its current value to --min-lr at the new end, and the SSD plan " +
  "(checks, sparse phases, the final dense part) is re-planned for the new length; metrics " +
  "are appended. A finished run resumed with its own --steps is complete: nothing is done.";

/** Keys a run under way cannot change: the model, the data order, the kind of schedule. */
const FIXED_ON_RESUME = [
  "preset",
  "vocab",
  "ctx",
  "d_model",
  "n_layer",
  "n_head",
  "d_ff",
  "bias",
  "activation",
  "batch_size",
  "seed",
  "data",
  "val",
  "schedule",
  "experts",
  "top_k",
] as const;

/** What a resume continues with. */
export interface ResumePlan {
  /** The checkpoint it starts from. */
  checkpoint: RunCheckpoint;
  /** Its training state. */
  state: TrainState;
  /** The config the run continues under. */
  config: TrainConfig;
  /** Changed keys, as "lr 0.003 -> 0.001" (empty: the resume is exact). */
  changes: string[];
  /** The checkpoint is the end of a finished run of `config.steps` steps: nothing to do. */
  complete: boolean;
}

/** Reads the checkpoint a resume starts from and its training state. */
export async function readResumePoint(
  path: string,
): Promise<{ checkpoint: RunCheckpoint; state: TrainState }> {
  const checkpoint = await resumeCheckpoint(path);
  // Its header was read to choose it: the training state comes with it.
  return { checkpoint, state: parseTrainState(checkpoint.train, checkpoint.path) };
}

/**
 * Checks `config` against a saved run: refuses what cannot change and a
 * length below the saved step; returns the changes that apply.
 */
export function resumeChanges(saved: TrainConfig, config: TrainConfig, step: number): string[] {
  const base = { ...DEFAULT_TRAIN_CONFIG, ...saved };
  for (const k of FIXED_ON_RESUME) {
    if (config[k] !== base[k]) {
      throw new ConfigError(
        `${flagOf(k)} cannot change when resuming (the run has ${JSON.stringify(base[k])}, ` +
          `got ${JSON.stringify(config[k])}): start a new run with another --out`,
      );
    }
  }
  if (config.steps < step) {
    throw new ConfigError(
      `--steps ${config.steps} is below the checkpoint's step ${step}: give --steps ${step} or more`,
    );
  }
  const ignored = new Set<string>(["out", "tokens", ...FIXED_ON_RESUME]);
  return Object.keys(DEFAULT_TRAIN_CONFIG)
    .filter((k) => !ignored.has(k) && config[k] !== base[k])
    .map((k) => `${k} ${JSON.stringify(base[k])} -> ${JSON.stringify(config[k])}`);
}

/**
 * Resolves `--resume path` with the flags given now (snake_case keys the
 * user gave) and an optional `--config` file, read and checked as on a new
 * run. The run continues in `flags.out`, else in the checkpoint's folder
 * (never in the folder saved in the checkpoint: the run may have moved).
 */
export async function resolveResume(
  path: string,
  flags: Record<string, unknown>,
  configFile?: string,
): Promise<ResumePlan> {
  const { checkpoint, state } = await readResumePoint(path);
  const file = configFile ? await readConfigFile(configFile) : {};
  const overrides: Record<string, unknown> = { ...file, ...flags };
  if (configFile) checkLength(file, configFile);
  checkLength(flags, "flags");
  // Type and key checks as on a new run (the values themselves are checked below).
  const source = configFile ? `flags or ${configFile}` : "flags";
  mergeConfig(DEFAULT_TRAIN_CONFIG, overrides, source, TRAIN_CONFIG_TYPES);
  const saved = state.config;
  const merged = { ...DEFAULT_TRAIN_CONFIG, ...saved, ...overrides } as TrainConfig;
  if (overrides.steps !== undefined && overrides.tokens === undefined) merged.tokens = null;
  merged.out = (flags.out as string | undefined) ?? dirname(checkpoint.path);
  const config = checkTrainConfig(merged);
  const changes = resumeChanges(saved, config, state.step);
  const complete = checkpoint.final && state.step === config.steps;
  return { checkpoint, state, config, changes, complete };
}
