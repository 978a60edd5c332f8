/**
 * A GPT (and optionally its AdamW state and training state) to and from a
 * safetensors checkpoint. Downloads every tensor in one host wait;
 * the file write itself is atomic (core/checkpoint.ts).
 */
import {
  f32Data,
  type HostTensor,
  META_CONFIG,
  META_MOE,
  META_TRAIN,
  metaJson,
  optimMName,
  optimVName,
  readCheckpoint,
  ssdMetadata,
  validateAgainstConfig,
  writeCheckpoint,
} from "../checkpoint.ts";
import { CheckpointError, SsdError } from "../errors.ts";
import type { AdamW } from "../optim/adamw.ts";
import { keep } from "../scope.ts";
import { readAll, type Tensor, tensor } from "../tensor.ts";
import { type GPTConfig, paramShapes, validateConfig } from "./config.ts";
import { GPT } from "./gpt.ts";
import { type MoeLayout, validateMoeLayout } from "./moe_layout.ts";

/** What a saved checkpoint holds besides the weights. */
export interface SaveOptions {
  /** Optimizer whose moments (and step count, in `train`) are saved. */
  optimizer?: AdamW;
  /** Training state (`ssd.train`). */
  train?: Record<string, unknown> | null;
  /** MoE layout (`ssd.moe`); default: the model's own. */
  moe?: MoeLayout | null;
}

/** Writes `model` (and the optional parts) to `path` atomically. */
export async function saveGPT(path: string, model: GPT, opts: SaveOptions = {}): Promise<void> {
  const named: [string, Tensor][] = [...model.params];
  if (opts.optimizer) {
    const st = opts.optimizer.state();
    for (const name of model.params.keys()) {
      for (const key of [optimMName(name), optimVName(name)]) {
        if (st.tensors[key]) named.push([key, st.tensors[key]]);
      }
    }
  }
  const data = await readAll(named.map(([, t]) => t));
  const tensors = new Map<string, HostTensor>();
  named.forEach(([name, t], i) => {
    tensors.set(name, { dtype: "F32", shape: t.shape, data: data[i] as Float32Array });
  });
  await writeCheckpoint(path, {
    tensors,
    metadata: ssdMetadata({
      config: { ...model.config },
      moe: (opts.moe ?? model.moe) as Record<string, unknown> | null,
      train: opts.train ?? null,
    }),
  });
}

/** A checkpoint loaded onto the GPU. */
export interface LoadedGPT {
  /** The model, its parameters kept (owned by the caller: `model.release()`). */
  model: GPT;
  /** Its config. */
  config: GPTConfig;
  /** `ssd.train`, or null. */
  train: Record<string, unknown> | null;
  /** `ssd.moe`, or null for a dense checkpoint. */
  moe: MoeLayout | null;
  /** Optimizer moments by checkpoint name, on the GPU (kept), when asked for and present. */
  moments: Record<string, Tensor> | null;
}

/** A checkpoint read on the host and checked against its own config. */
export interface CheckedCheckpoint {
  /** The header and the tensors read. */
  ck: Awaited<ReturnType<typeof readCheckpoint>>;
  /** Its validated model config. */
  config: GPTConfig;
  /** `ssd.moe`, validated, or null for a dense checkpoint. */
  moe: MoeLayout | null;
  /** Every parameter's shape under that config. */
  shapes: Map<string, number[]>;
}

/**
 * Reads a checkpoint's weights (and, with `optimizer: true`, its moments,
 * which must then be present) on the host and checks every tensor against
 * its config and MoE layout.
 */
export async function readCheckedCheckpoint(
  path: string,
  opts: { optimizer?: boolean } = {},
): Promise<CheckedCheckpoint> {
  const ck = await readCheckpoint(path, {
    filter: opts.optimizer ? undefined : (name) => !name.startsWith("optim."),
  });
  const rawConfig = metaJson(ck.header, META_CONFIG, true)!;
  let config: GPTConfig;
  try {
    config = validateConfig(rawConfig as unknown as GPTConfig);
  } catch (e) {
    if (e instanceof SsdError) {
      throw new CheckpointError(`Checkpoint ${path} has an invalid model config: ${e.message}`);
    }
    throw e;
  }
  const rawMoe = metaJson(ck.header, META_MOE);
  const moe = rawMoe ? validateMoeLayout(rawMoe, config, path) : null;
  const shapes = paramShapes(config, moe?.experts);
  validateAgainstConfig(ck.header, shapes, { optimizer: opts.optimizer ? "required" : "optional" });
  return { ck, config, moe, shapes };
}

/**
 * Reads a checkpoint, checks every tensor against its config, and uploads
 * the weights (and, with `optimizer: true`, the moments).
 */
export async function loadGPT(
  path: string,
  opts: { optimizer?: boolean } = {},
): Promise<LoadedGPT> {
  const { ck, config, moe, shapes } = await readCheckedCheckpoint(path, opts);

  const params = new Map<string, Tensor>();
  for (const [name, shape] of shapes) {
    params.set(name, keep(tensor(f32Data(ck.tensors.get(name)!, name), shape, { name })));
  }
  let moments: Record<string, Tensor> | null = null;
  if (opts.optimizer) {
    moments = {};
    for (const [name, shape] of shapes) {
      for (const key of [optimMName(name), optimVName(name)]) {
        moments[key] = keep(tensor(f32Data(ck.tensors.get(key)!, key), shape, { name: key }));
      }
    }
  }
  return {
    model: new GPT(config, params, moe),
    config,
    train: metaJson(ck.header, META_TRAIN),
    moe,
    moments,
  };
}
