/**
 * Tiny checkpoints for the eval / generate / inspect tests, written straight
 * from host arrays (no GPU needed) in the real format: `writeCheckpoint` with
 * the ssd metadata, optionally AdamW moments and a training state.
 *
 * The weights are drawn larger than GPT-2's init (std 0.3 instead of 0.02) so
 * that the logits differ clearly between contexts: a near-uniform model would
 * make greedy decoding and seed tests weak.
 */
import {
  type HostTensor,
  optimMName,
  optimVName,
  ssdMetadata,
  writeCheckpoint,
} from "../../core/checkpoint.ts";
import { type GPTConfig, paramShapes } from "../../core/nn/config.ts";
import { Rng } from "../../core/rng.ts";

/** ctx 8, one layer: every test forward is a handful of small dispatches. */
export const TINY_CONFIG: Readonly<GPTConfig> = Object.freeze({
  vocab: 256,
  ctx: 8,
  d_model: 16,
  n_layer: 1,
  n_head: 2,
  d_ff: 32,
  bias: true,
  activation: "relu",
});

/** A training state as `ssd train` saves it (the fields inspect summarises). */
export const TINY_TRAIN_STATE = Object.freeze({
  step: 12,
  tokens_seen: 3072,
  phase: "dense",
  phase_history: [{
    event: "switch",
    from: "dense",
    to: "sparse",
    step: 5,
    similarity: 0.93,
    reason: "stable",
  }],
  data_source: "/tmp/some.txt",
  tokenizer: "bytes-v1",
  optimizer_step: 12,
});

/** Options of `writeTinyCheckpoint`. */
export interface TinyOptions {
  /** Model config; `TINY_CONFIG` by default. */
  config?: GPTConfig;
  /** Weight seed. */
  seed?: number;
  /** Also store AdamW moments for every parameter. */
  optimizer?: boolean;
  /** `ssd.train`; `TINY_TRAIN_STATE` by default, null for none. */
  train?: Record<string, unknown> | null;
  /** `ssd.moe`, when given. */
  moe?: Record<string, unknown> | null;
  /** Extra tensors (e.g. routers) added as they are. */
  extra?: Record<string, HostTensor>;
}

/** Writes a random tiny model to `path` and returns its config. */
export async function writeTinyCheckpoint(
  path: string,
  opts: TinyOptions = {},
): Promise<GPTConfig> {
  const config = opts.config ?? { ...TINY_CONFIG };
  const rng = new Rng(opts.seed ?? 1);
  const tensors = new Map<string, HostTensor>();
  for (const [name, shape] of paramShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (/ln_\d\.weight$|ln_f\.weight$/.test(name)) {
      data = Float32Array.from(rng.normalArray(n, 0.1), (v) => 1 + v);
    } else if (name.endsWith(".bias")) data = rng.normalArray(n, 0.05);
    else data = rng.normalArray(n, 0.3);
    tensors.set(name, { dtype: "F32", shape, data });
    if (opts.optimizer) {
      tensors.set(optimMName(name), { dtype: "F32", shape, data: rng.normalArray(n, 1e-3) });
      tensors.set(optimVName(name), {
        dtype: "F32",
        shape,
        data: Float32Array.from(rng.normalArray(n, 1e-3), Math.abs),
      });
    }
  }
  for (const [name, t] of Object.entries(opts.extra ?? {})) tensors.set(name, t);
  await writeCheckpoint(path, {
    tensors,
    metadata: ssdMetadata({
      config: { ...config },
      train: opts.train === undefined ? { ...TINY_TRAIN_STATE } : opts.train,
      moe: opts.moe ?? null,
    }),
  });
  return config;
}

/** Writes the first `keep` bytes of `src` to `dst` (a checkpoint cut off mid-write). */
export async function truncateCopy(src: string, dst: string, keep: number): Promise<void> {
  const bytes = await Deno.readFile(src);
  await Deno.writeFile(dst, bytes.subarray(0, keep));
}

/** Lists a folder's entries, sorted (to check that a failing command wrote nothing). */
export async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

/** Deterministic English-looking text of exactly `n` bytes. */
export function sampleText(n: number, seed = 7): string {
  const words = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "ran", "off", "quickly"];
  const rng = new Rng(seed);
  let s = "";
  while (s.length < n) s += words[rng.int(words.length)] + (rng.int(9) === 0 ? ".\n" : " ");
  return s.slice(0, n);
}
