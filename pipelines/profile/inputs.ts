/**
 * The checks `ssd profile` makes before the GPU is opened: flags, checkpoint
 * headers (one model shape, byte tokenizer, step order) and the probe text.
 */
import { META_CONFIG, readHeader, readSsdMetadata } from "../../core/checkpoint.ts";
import { BROWN_SOURCE } from "../../core/corpus_brown.ts";
import { loadBrownDataset, loadText } from "../../core/data.ts";
import { CheckpointError, ConfigError, SsdError } from "../../core/errors.ts";
import { type GPTConfig, validateConfig } from "../../core/nn/config.ts";
import { checkExperts, defaultTopK } from "../../core/nn/moe_layout.ts";
import { requireByteTokenizer, requirePositiveInt } from "../checks.ts";
import type { ProfileConfig } from "./types.ts";

/** A checkpoint as seen from its header, before anything is loaded. */
export interface Entry {
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
export async function prepare(config: ProfileConfig): Promise<{ entries: Entry[]; topK: number }> {
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
  checkExperts(config.experts, topK, entries[0].config.d_ff);
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
