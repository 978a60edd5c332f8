/**
 * Writing safetensors checkpoints (format: core/safetensors.ts): deterministic bytes
 * (metadata keys and tensors in sorted order, fixed key order inside entries, no
 * whitespace but the padding), so save → load → save gives identical bytes, written
 * atomically and fsynced (core/atomic_write.ts): a crash leaves either the old or the
 * new checkpoint, never half of one.
 */
import { dirname } from "node:path";
import { isAtomicTemp, writeFileAtomic } from "./atomic_write.ts";
import { byName, describe, json, oneLine, q } from "./_checkpoint_util.ts";
import { CheckpointError, fmtShape } from "./errors.ts";
import {
  arrayOf,
  CHECKPOINT_FORMAT,
  type CheckpointContents,
  isSafeDType,
  MAX_HEADER_BYTES,
  META_FORMAT,
  METADATA_KEY,
  numelOf,
  requireLittleEndian,
  SUPPORTED_FORMATS,
} from "./safetensors.ts";

const HEADER_ALIGN = 8;

/** A validated checkpoint laid out for writing. */
interface Layout {
  /** Length prefix + padded JSON header. */
  head: Uint8Array;
  /** Tensor bytes in file order. */
  chunks: Uint8Array[];
  /** Bytes of the whole file. */
  total: number;
}

/**
 * Validates the contents and lays out the file. The JSON is assembled by hand because
 * JavaScript objects enumerate integer-like keys ("0", "12") before the others, which
 * would break the sorted order.
 */
function layout(path: string, contents: CheckpointContents): Layout {
  requireLittleEndian(path);
  const fail = (what: string) =>
    new CheckpointError(`Cannot save checkpoint ${path}: ${what}: fix the caller`);

  const meta = { ...(contents.metadata ?? {}) };
  if (meta[META_FORMAT] === undefined) meta[META_FORMAT] = CHECKPOINT_FORMAT;
  if (!SUPPORTED_FORMATS.includes(meta[META_FORMAT])) {
    throw fail(
      `metadata ${q(META_FORMAT)} is ${json(meta[META_FORMAT])}, but this ssd writes only ` +
        `version ${CHECKPOINT_FORMAT}`,
    );
  }
  const metaParts: string[] = [];
  for (const k of Object.keys(meta).sort(byName)) {
    if (typeof meta[k] !== "string") {
      throw fail(`metadata ${q(k)} is ${describe(meta[k])}, not a string (use metaJson)`);
    }
    metaParts.push(`${JSON.stringify(k)}:${JSON.stringify(meta[k])}`);
  }

  const src = contents.tensors instanceof Map
    ? [...contents.tensors]
    : Object.entries(contents.tensors);
  src.sort((a, b) => byName(a[0], b[0]));

  const parts = [`${JSON.stringify(METADATA_KEY)}:{${metaParts.join(",")}}`];
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of src) {
    if (name === METADATA_KEY) throw fail(`${q(name)} is reserved and cannot name a tensor`);
    if (!isSafeDType(t.dtype)) throw fail(`tensor ${q(name)} has unknown dtype ${json(t.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw fail(`tensor ${q(name)} has shape ${json(t.shape)}, not non-negative integers`);
    }
    const want = arrayOf(t.dtype);
    if (!(t.data instanceof want)) {
      throw fail(
        `tensor ${q(name)} is ${t.dtype} but its data is ` +
          `${Object.prototype.toString.call(t.data).slice(8, -1)}, not ${want.name}`,
      );
    }
    const n = numelOf(t.shape);
    if (t.data.length !== n) {
      throw fail(
        `tensor ${q(name)} has shape ${fmtShape(t.shape)} (${n} elements) but ` +
          `${t.data.length} values`,
      );
    }
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const end = offset + bytes.length;
    parts.push(
      `${JSON.stringify(name)}:{"dtype":${JSON.stringify(t.dtype)},` +
        `"shape":[${t.shape.join(",")}],"data_offsets":[${offset},${end}]}`,
    );
    chunks.push(bytes);
    offset = end;
  }

  const jsonBytes = new TextEncoder().encode(`{${parts.join(",")}}`);
  const padded = Math.ceil(jsonBytes.length / HEADER_ALIGN) * HEADER_ALIGN;
  if (padded > MAX_HEADER_BYTES) {
    throw fail(`header of ${padded} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const head = new Uint8Array(8 + padded).fill(0x20, 8 + jsonBytes.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(jsonBytes, 8);
  return { head, chunks, total: head.length + offset };
}

/**
 * Serialises a checkpoint to bytes (the exact bytes `writeCheckpoint` writes).
 *
 * @param contents tensors and metadata; `ssd.format` is added when absent
 * @param label name used in error messages
 * @returns the file bytes
 */
export function encodeCheckpoint(contents: CheckpointContents, label = "<memory>"): Uint8Array {
  const { head, chunks, total } = layout(label, contents);
  const out = new Uint8Array(total);
  out.set(head, 0);
  let at = head.length;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Options of `writeCheckpoint`. */
export interface WriteOptions {
  /**
   * Test hook, called after the temporary file is complete and fsynced and before it is
   * renamed over the target. Throwing here simulates a crash at the worst moment.
   */
  beforeRename?: () => void | Promise<void>;
}

/** True for the name of a temporary file `writeCheckpoint` makes (left only by a killed process). */
export const isCheckpointTemp: (fileName: string) => boolean = isAtomicTemp;

/**
 * Writes a checkpoint atomically: a temporary file in the same folder is written,
 * fsynced and renamed over `path`. On any failure the temporary file is removed and an
 * existing checkpoint at `path` is left as it was.
 *
 * @param path target .safetensors file; its folder must exist
 * @param contents tensors (written in sorted name order) and metadata (`ssd.format` added when absent)
 * @param opts `beforeRename` test hook
 * @returns the number of bytes written
 * @throws CheckpointError on invalid contents or an I/O failure
 *
 * @example
 * ```ts
 * await writeCheckpoint("run/ckpt-100.safetensors", {
 *   tensors: { "transformer.wte.weight": { dtype: "F32", shape: [256, 64], data: wte } },
 *   metadata: ssdMetadata({ config }),
 * });
 * ```
 */
export async function writeCheckpoint(
  path: string,
  contents: CheckpointContents,
  opts: WriteOptions = {},
): Promise<number> {
  const { head, chunks, total } = layout(path, contents);
  try {
    await writeFileAtomic(path, [head, ...chunks], { fsync: true, ...opts });
  } catch (e) {
    throw saveError(path, e);
  }
  return total;
}

function saveError(path: string, e: unknown): CheckpointError {
  if (e instanceof CheckpointError) return e;
  const msg = oneLine(e instanceof Error ? e.message : String(e));
  let hint = "check that the folder exists, is writable and has free space";
  if (e instanceof Deno.errors.NotFound) hint = `create the folder ${dirname(path)} first`;
  else if (e instanceof Deno.errors.PermissionDenied) hint = "check the folder's permissions";
  const err = new CheckpointError(
    `Cannot save checkpoint ${path}: ${msg}: ${hint} (any previous checkpoint there is unchanged)`,
  );
  err.cause = e;
  return err;
}
