/**
 * ssd's checkpoints: safetensors files (the format: core/safetensors.ts, read
 * and written by core/safetensors_read.ts and core/safetensors_write.ts, all
 * re-exported here) whose `__metadata__` holds ssd's keys: the format version, the
 * model config, the MoE layout and the training state, as canonical JSON; AdamW
 * moments stored as `optim.m.<name>` / `optim.v.<name>` tensors; and the check of a
 * file's tensors against a model config.
 */
import { byName, corrupt, describe, oneLine, q } from "./_checkpoint_util.ts";
import { CheckpointError, fmtShape } from "./errors.ts";
import {
  CHECKPOINT_FORMAT,
  type CheckpointHeader,
  META_FORMAT,
  type SafeDType,
  type TensorInfo,
} from "./safetensors.ts";
import { validateTrainState } from "./train_state.ts";

export {
  CHECKPOINT_FORMAT,
  type CheckpointContents,
  type CheckpointHeader,
  DTYPE_BYTES,
  f32Data,
  type HostTensor,
  isSafeDType,
  type LoadedCheckpoint,
  MAX_HEADER_BYTES,
  META_FORMAT,
  type ReadCheckpointOptions,
  type ReadOptions,
  type SafeDType,
  SUPPORTED_FORMATS,
  type TensorData,
  type TensorInfo,
  u32Data,
} from "./safetensors.ts";
export { decodeCheckpoint, readCheckpoint, readHeader } from "./safetensors_read.ts";
export {
  encodeCheckpoint,
  isCheckpointTemp,
  writeCheckpoint,
  type WriteOptions,
} from "./safetensors_write.ts";
export { validateTrainState } from "./train_state.ts";

/** Metadata key: model config JSON. */
export const META_CONFIG = "ssd.config";
/** Metadata key: MoE JSON (experts, top_k, router, per-layer permutation); absent when dense. */
export const META_MOE = "ssd.moe";
/** Metadata key: training state JSON (step, tokens, schedule, data cursor, RNG, LR state). */
export const META_TRAIN = "ssd.train";
/** Name prefix of Adam's first moments. */
export const OPTIM_M_PREFIX = "optim.m.";
/** Name prefix of Adam's second moments. */
export const OPTIM_V_PREFIX = "optim.v.";

// ---------------------------------------------------------------------------
// ssd metadata

/**
 * JSON with object keys sorted at every level, so equal values always give equal bytes.
 * Numbers print in JavaScript's shortest round-trip form, so floats (LR, RNG state)
 * come back bit-exact.
 *
 * @throws CheckpointError on values JSON cannot hold exactly (NaN, Infinity, undefined, functions)
 */
export function canonicalJson(value: unknown): string {
  const walk = (v: unknown, at: string): string => {
    if (v === null || typeof v === "boolean" || typeof v === "string") return JSON.stringify(v);
    if (typeof v === "number") {
      if (!Number.isFinite(v)) {
        throw new CheckpointError(
          `Cannot store ${at} = ${v} in checkpoint metadata: JSON has no ${v}: fix the value`,
        );
      }
      return JSON.stringify(v);
    }
    if (Array.isArray(v)) return `[${v.map((x, i) => walk(x, `${at}[${i}]`)).join(",")}]`;
    if (typeof v === "object") {
      const keys = Object.keys(v as object).sort(byName);
      const parts = keys
        .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
        .map((k) =>
          `${JSON.stringify(k)}:${walk((v as Record<string, unknown>)[k], `${at}.${k}`)}`
        );
      return `{${parts.join(",")}}`;
    }
    throw new CheckpointError(
      `Cannot store ${at} (${typeof v}) in checkpoint metadata: not JSON: fix the value`,
    );
  };
  return walk(value, "value");
}

/** The ssd parts of a checkpoint's metadata. */
export interface SsdMetadata {
  /** Model config (vocab, ctx, d_model, n_layer, n_head, d_ff, bias, activation). */
  config: Record<string, unknown>;
  /** MoE description; null for a dense checkpoint. */
  moe?: Record<string, unknown> | null;
  /** Training state; null when the checkpoint is weights only. */
  train?: Record<string, unknown> | null;
}

/**
 * Builds the `__metadata__` map from its parts (canonical JSON each).
 *
 * @param parts config, and optionally moe and train state
 * @param extra further string entries (must not use the `ssd.` keys above)
 * @returns the metadata map, with `ssd.format` set
 */
export function ssdMetadata(
  parts: SsdMetadata,
  extra: Record<string, string> = {},
): Record<string, string> {
  const meta: Record<string, string> = Object.fromEntries(Object.entries(extra));
  meta[META_FORMAT] = CHECKPOINT_FORMAT;
  meta[META_CONFIG] = canonicalJson(parts.config);
  if (parts.moe) meta[META_MOE] = canonicalJson(parts.moe);
  if (parts.train) meta[META_TRAIN] = canonicalJson(parts.train);
  return meta;
}

/**
 * Parses one JSON-valued metadata entry; the training state (`META_TRAIN`) is also
 * checked by `validateTrainState`, so every reader of it gets the check.
 *
 * @param header the checkpoint header (for its metadata and path)
 * @param key e.g. `META_CONFIG`
 * @param required when true a missing entry throws; else it gives null
 * @returns the parsed JSON object, or null when absent and not required
 * @throws CheckpointError when missing (and required), not JSON, or not an object
 */
export function metaJson(
  header: Pick<CheckpointHeader, "path" | "metadata">,
  key: string,
  required = false,
): Record<string, unknown> | null {
  const raw = header.metadata[key];
  if (raw === undefined) {
    if (!required) return null;
    throw new CheckpointError(
      `Checkpoint ${header.path} has no ${q(key)} metadata: it was not saved by ssd train, ` +
        `or was exported without it: use a checkpoint saved by ssd train`,
    );
  }
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    throw corrupt(
      header.path,
      `metadata ${q(key)} is not valid JSON (${oneLine((e as Error).message)})`,
    );
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw corrupt(header.path, `metadata ${q(key)} is ${describe(v)}, not a JSON object`);
  }
  if (key === META_TRAIN) validateTrainState(v, header.path);
  return v as Record<string, unknown>;
}

/**
 * Reads the ssd metadata of a checkpoint: the config (required), MoE and training state.
 *
 * @param header the checkpoint header
 * @returns format, config, moe (null when dense), train (null when absent)
 */
export function readSsdMetadata(
  header: Pick<CheckpointHeader, "path" | "metadata">,
): SsdMetadata & { format: string } {
  return {
    format: header.metadata[META_FORMAT] ?? "",
    config: metaJson(header, META_CONFIG, true)!,
    moe: metaJson(header, META_MOE),
    train: metaJson(header, META_TRAIN),
  };
}

// ---------------------------------------------------------------------------
// Names and config checks

/** Checkpoint name of a parameter's first Adam moment: `optim.m.<name>`. */
export function optimMName(name: string): string {
  return OPTIM_M_PREFIX + name;
}

/** Checkpoint name of a parameter's second Adam moment: `optim.v.<name>`. */
export function optimVName(name: string): string {
  return OPTIM_V_PREFIX + name;
}

/** Splits an optimizer-moment name into moment and parameter name; null for other names. */
export function parseOptimName(name: string): { moment: "m" | "v"; param: string } | null {
  if (name.startsWith(OPTIM_M_PREFIX)) {
    return { moment: "m", param: name.slice(OPTIM_M_PREFIX.length) };
  }
  if (name.startsWith(OPTIM_V_PREFIX)) {
    return { moment: "v", param: name.slice(OPTIM_V_PREFIX.length) };
  }
  return null;
}

/**
 * Drops the optimizer moments (a weights-only copy of a checkpoint).
 *
 * @param tensors a checkpoint's tensors
 * @returns a new map without `optim.m.*` / `optim.v.*`
 */
export function withoutOptimizer<T>(tensors: Map<string, T>): Map<string, T> {
  return new Map([...tensors].filter(([name]) => parseOptimName(name) === null));
}

/** Options of `validateAgainstConfig`. */
export interface ValidateOptions {
  /** Expected dtype of every tensor; default "F32". */
  dtype?: SafeDType;
  /** "optional" (default): moments may be absent; "required": every parameter needs both. */
  optimizer?: "optional" | "required";
}

/**
 * Every difference between a checkpoint's tensors and the model's expected names and
 * shapes (for `inspect`, which lists them; `validateAgainstConfig` refuses them).
 * Optimizer moments (`optim.m.<p>` / `optim.v.<p>`) must match their parameter's shape.
 *
 * @param header the checkpoint header (`readHeader`, or `readCheckpoint(...).header`)
 * @param expectedShapes parameter name → shape, from the model config
 * @param opts expected dtype and whether optimizer moments are required
 * @returns one phrase per problem (missing, wrong shape or dtype, unexpected), in name order
 */
export function configMismatches(
  header: Pick<CheckpointHeader, "tensors">,
  expectedShapes: Map<string, readonly number[]>,
  opts: ValidateOptions = {},
): string[] {
  const dtype = opts.dtype ?? "F32";
  const problems: string[] = [];
  const check = (name: string, want: readonly number[], info: TensorInfo | undefined) => {
    if (!info) {
      problems.push(`tensor ${q(name)} is missing (expected ${dtype} ${fmtShape(want)})`);
    } else if (
      info.shape.length !== want.length || info.shape.some((d, i) => d !== want[i])
    ) {
      problems.push(
        `tensor ${q(name)} has shape ${fmtShape(info.shape)}, expected ${fmtShape(want)}`,
      );
    } else if (info.dtype !== dtype) {
      problems.push(`tensor ${q(name)} has dtype ${info.dtype}, expected ${dtype}`);
    }
  };
  const names = [...expectedShapes.keys()].sort(byName);
  for (const name of names) check(name, expectedShapes.get(name)!, header.tensors.get(name));
  for (const name of names) {
    for (const moment of [optimMName(name), optimVName(name)]) {
      const info = header.tensors.get(moment);
      if (info || opts.optimizer === "required") check(moment, expectedShapes.get(name)!, info);
    }
  }
  for (const name of header.tensors.keys()) {
    const opt = parseOptimName(name);
    if (!expectedShapes.has(opt ? opt.param : name)) {
      const info = header.tensors.get(name)!;
      problems.push(`unexpected tensor ${q(name)} ${fmtShape(info.shape)} (not in the model)`);
    }
  }
  return problems;
}

/**
 * Checks a checkpoint's tensors against the model's expected names and shapes (see
 * `configMismatches`).
 *
 * @param header the checkpoint header (`readHeader`, or `readCheckpoint(...).header`)
 * @param expectedShapes parameter name → shape, from the model config
 * @param opts expected dtype and whether optimizer moments are required
 * @throws CheckpointError naming the first problem (expected and found) and how many more there are
 */
export function validateAgainstConfig(
  header: Pick<CheckpointHeader, "path" | "tensors">,
  expectedShapes: Map<string, readonly number[]>,
  opts: ValidateOptions = {},
): void {
  const problems = configMismatches(header, expectedShapes, opts);
  if (problems.length === 0) return;
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : "";
  throw new CheckpointError(
    `Checkpoint ${header.path} does not match the model config: ${problems[0]}${more}: ` +
      `it was saved with another config (see \`ssd inspect ${header.path}\`); give matching ` +
      `model flags, or none to use the config stored in the checkpoint`,
  );
}
