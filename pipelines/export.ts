/**
 * `ssd export`: a checkpoint's weights as a folder PyTorch users load
 * directly: Hugging Face GPT-2 (`hf`: `config.json` + `model.safetensors`
 * for `GPT2LMHeadModel.from_pretrained`) or nanoGPT (`nanogpt`: its
 * `GPTConfig` fields + `model.safetensors` for `load_state_dict`). MoE
 * checkpoints add `moe.json` and `router.safetensors`. Optimizer moments
 * and training state are never exported. Layouts: pipelines/export_formats.ts.
 *
 * The checkpoint is read and checked as `ssd eval` loads it (config, MoE
 * layout, every tensor against the config, byte tokenizer), on the host:
 * no GPU is needed. The folder is written whole or not at all: every file
 * goes into a temporary folder next to DIR, which is then renamed to DIR
 * (with `force`, the old DIR is moved aside first and removed only once
 * the new one is in place).
 */
import { basename, dirname, join, resolve } from "node:path";
import { writeFileAtomic } from "../core/atomic_write.ts";
import { type HostTensor, META_TRAIN, metaJson, writeCheckpoint } from "../core/checkpoint.ts";
import { ConfigError, SsdError } from "../core/errors.ts";
import { type GPTConfig, paramCount } from "../core/nn/config.ts";
import { readCheckedCheckpoint } from "../core/nn/gpt_checkpoint.ts";
import type { MoeLayout } from "../core/nn/moe_layout.ts";
import { requireByteTokenizer } from "./checks.ts";
import {
  EXPORT_FORMATS,
  type ExportFormat,
  hfConfig,
  hfTensors,
  moeJson,
  nanogptConfig,
  nanogptTensors,
  routerTensors,
  type Weights,
} from "./export_formats.ts";

export { EXPORT_FORMATS, type ExportFormat } from "./export_formats.ts";

/** What `ssd export` writes. */
export interface ExportConfig {
  /** The checkpoint (.safetensors) to export. */
  checkpoint: string;
  /** The folder to write (created; its parent too when missing). */
  out: string;
  /** `hf` (Hugging Face GPT-2) or `nanogpt`. */
  format: ExportFormat;
  /** Replace an existing folder `out` instead of refusing it. */
  force?: boolean;
}

/** One file written. */
export interface ExportedFile {
  /** Its path: `out` joined with the file name. */
  path: string;
  /** Its size in bytes. */
  bytes: number;
}

/** What `runExport` returns (`ssd export --json` prints exactly this). */
export interface ExportReport {
  /** The checkpoint exported. */
  checkpoint: string;
  /** The folder written. */
  out: string;
  /** The format written. */
  format: ExportFormat;
  /** The model's parameters (tied head once, as `ssd inspect`; MoE routers not counted). */
  parameters: number;
  /** The model config, as stored in the checkpoint. */
  config: GPTConfig;
  /** Experts and top_k of an MoE checkpoint (exported dense, plus moe.json); null when dense. */
  moe: { experts: number; top_k: number } | null;
  /** Every file written, in name order. */
  files: ExportedFile[];
}

/** A checkpoint read on the host and checked as `loadGPT` checks it. */
interface HostModel {
  config: GPTConfig;
  moe: MoeLayout | null;
  weights: Weights;
}

/** Reads the weights (not the moments) and checks them against the stored config. */
async function readModel(path: string): Promise<HostModel> {
  const { ck, config, moe } = await readCheckedCheckpoint(path);
  requireByteTokenizer({ config, train: metaJson(ck.header, META_TRAIN) }, path);
  return { config, moe, weights: ck.tensors };
}

/** A file of the export: a safetensors file or a JSON document. */
type ExportFile =
  | { name: string; tensors: Map<string, HostTensor>; metadata: Record<string, string> }
  | { name: string; json: Record<string, unknown> };

// transformers refuses a safetensors file whose metadata lacks format "pt".
const PT_METADATA = { format: "pt" };

/** The files of one format, by name. */
function exportFiles(m: HostModel, format: ExportFormat): ExportFile[] {
  const files: ExportFile[] = format === "hf"
    ? [
      { name: "config.json", json: hfConfig(m.config, m.moe) },
      { name: "model.safetensors", tensors: hfTensors(m.config, m.weights), metadata: PT_METADATA },
    ]
    : [
      { name: "config.json", json: nanogptConfig(m.config, m.moe) },
      {
        name: "model.safetensors",
        tensors: nanogptTensors(m.config, m.weights),
        metadata: PT_METADATA,
      },
    ];
  if (m.moe) {
    files.push({ name: "moe.json", json: moeJson(m.config, m.moe, format) });
    files.push({
      name: "router.safetensors",
      tensors: routerTensors(m.config, m.weights),
      metadata: PT_METADATA,
    });
  }
  return files.sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** Whether `out` exists; a file (not a folder) there is always refused. */
async function outExists(out: string): Promise<boolean> {
  try {
    const info = await Deno.stat(out);
    if (!info.isDirectory) {
      throw new ConfigError(
        `-o ${out} is an existing file: give a folder for the export (created if missing)`,
      );
    }
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** A name next to `out`: `.<name>.<tag>-<pid>-<12 hex>` (a temporary, or the replaced folder). */
function siblingName(out: string, tag: string): string {
  const rand = Array.from(
    crypto.getRandomValues(new Uint8Array(6)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  return join(dirname(out), `.${basename(out)}.${tag}-${Deno.pid}-${rand}`);
}

/** Writes every file into `dir` (which exists); returns each file's size. */
async function writeFiles(dir: string, files: ExportFile[]): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  for (const f of files) {
    const path = join(dir, f.name);
    if ("json" in f) {
      const text = JSON.stringify(f.json, null, 2) + "\n";
      await writeFileAtomic(path, text, { fsync: true });
      sizes.set(f.name, new TextEncoder().encode(text).length);
    } else {
      sizes.set(f.name, await writeCheckpoint(path, { tensors: f.tensors, metadata: f.metadata }));
    }
  }
  return sizes;
}

/** Puts the finished folder `tmp` at `out`, moving an existing `out` aside until it is done. */
async function moveIntoPlace(tmp: string, out: string, replace: boolean): Promise<void> {
  if (!replace) {
    await Deno.rename(tmp, out);
    return;
  }
  const old = siblingName(out, "old");
  await Deno.rename(out, old);
  try {
    await Deno.rename(tmp, out);
  } catch (e) {
    await Deno.rename(old, out).catch(() => {});
    throw e;
  }
  // The new folder is in place: a leftover old one is only clutter, not a failure.
  await Deno.remove(old, { recursive: true }).catch(() => {});
}

/** One line for a failed write, naming the folder (which is unchanged). */
function writeError(out: string, e: unknown): SsdError {
  if (e instanceof SsdError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  const err = new SsdError(
    `Cannot write export ${out}: ${msg}: check that its folder is writable and has free ` +
      `space (nothing was changed at ${out})`,
  );
  err.cause = e;
  return err;
}

/**
 * Exports a checkpoint's weights to a folder in the Hugging Face GPT-2 or
 * the nanoGPT layout.
 *
 * @throws ConfigError for an unknown format, or an existing `out` without `force` (or a file there)
 * @throws CheckpointError for a missing, corrupt or invalid checkpoint, or one not on byte tokens
 * @throws SsdError when the folder cannot be written (an existing `out` is then unchanged)
 */
export async function runExport(config: ExportConfig): Promise<ExportReport> {
  if (!(EXPORT_FORMATS as readonly string[]).includes(config.format)) {
    throw new ConfigError(
      `Unknown export format ${JSON.stringify(config.format)}: use ${EXPORT_FORMATS.join(" or ")}`,
    );
  }
  const out = config.out;
  const exists = await outExists(out);
  if (exists && !config.force) {
    throw new ConfigError(
      `-o ${out} already exists: --force to replace it, or give another folder`,
    );
  }
  const model = await readModel(config.checkpoint);
  const files = exportFiles(model, config.format);

  let tmp: string | null = null;
  let sizes: Map<string, number>;
  try {
    await Deno.mkdir(dirname(resolve(out)), { recursive: true });
    tmp = siblingName(out, "tmp");
    await Deno.mkdir(tmp);
    sizes = await writeFiles(tmp, files);
    await moveIntoPlace(tmp, out, exists);
    tmp = null;
  } catch (e) {
    throw writeError(out, e);
  } finally {
    if (tmp) await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  return {
    checkpoint: config.checkpoint,
    out,
    format: config.format,
    parameters: paramCount(model.config),
    config: model.config,
    moe: model.moe ? { experts: model.moe.experts, top_k: model.moe.top_k } : null,
    files: files.map((f) => ({ path: join(out, f.name), bytes: sizes.get(f.name)! })),
  };
}
