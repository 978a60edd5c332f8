/**
 * The safetensors file format of checkpoints (SPEC 5), read and written on host
 * arrays; callers move the data to and from the GPU. ssd's metadata keys, the AdamW
 * moment names and the check against a model config are in core/checkpoint.ts.
 *
 * File layout (https://github.com/huggingface/safetensors, "Format"):
 *
 *   [0, 8)        N: header length, u64 little-endian
 *   [8, 8 + N)    header: UTF-8 JSON object, here padded with spaces to a multiple of 8
 *   [8 + N, end)  data section: raw little-endian tensor bytes, back to back
 *
 * The header maps each tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}`
 * (offsets relative to the data section) and the reserved key `__metadata__` to a
 * string→string map. The data section must be covered exactly: no overlaps, no gaps,
 * no trailing bytes.
 *
 * Output is deterministic (metadata keys and tensors in sorted order, fixed key order
 * inside entries, no whitespace but the padding), so save → load → save gives identical
 * bytes. Writes are atomic: a temporary file in the target's folder is written, fsynced
 * and renamed over the target, so a crash leaves either the old or the new checkpoint.
 *
 * Reading validates everything it can without the model (structure, bounds, dtypes,
 * overlaps, format version); `validateAgainstConfig` (core/checkpoint.ts) then checks
 * names and shapes against a model. Every failure is a one-line `CheckpointError` naming the file.
 */
import { basename, dirname, join } from "node:path";
import {
  byName,
  corrupt,
  CORRUPT_HINT,
  describe,
  json,
  oneLine,
  q,
  truncated,
} from "./_checkpoint_util.ts";
import { CheckpointError, fmtShape } from "./errors.ts";

// ---------------------------------------------------------------------------
// Constants and dtypes

/** The `ssd.format` version this code writes. */
export const CHECKPOINT_FORMAT = "1";
/** The `ssd.format` versions this code reads. */
export const SUPPORTED_FORMATS: readonly string[] = Object.freeze(["1"]);
/** Metadata key: format version. */
export const META_FORMAT = "ssd.format";
/** Largest header accepted on read, as in the reference safetensors implementation. */
export const MAX_HEADER_BYTES = 100_000_000;

const METADATA_KEY = "__metadata__";
const HEADER_ALIGN = 8;
const WRITE_BUFFER_BYTES = 1 << 20;

/**
 * A safetensors dtype. On the host, F16/BF16 are held as raw bits in a Uint16Array,
 * BOOL and F8 as bytes in a Uint8Array.
 */
export type SafeDType =
  | "BOOL"
  | "U8"
  | "I8"
  | "F8_E5M2"
  | "F8_E4M3"
  | "I16"
  | "U16"
  | "F16"
  | "BF16"
  | "I32"
  | "U32"
  | "F32"
  | "I64"
  | "U64"
  | "F64";

/** Bytes per element of each safetensors dtype. */
export const DTYPE_BYTES: Readonly<Record<SafeDType, number>> = Object.freeze({
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
});

/** Host array holding a tensor's elements; its type must fit the dtype (see `SafeDType`). */
export type TensorData =
  | Float32Array
  | Float64Array
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | BigInt64Array
  | BigUint64Array;

/** True for a dtype name this code knows. */
export function isSafeDType(s: unknown): s is SafeDType {
  return typeof s === "string" && Object.hasOwn(DTYPE_BYTES, s);
}

/** The safetensors dtype of a core tensor dtype ("f32" → "F32", "u32" → "U32"). */
export function safeDTypeOf(dtype: "f32" | "u32"): SafeDType {
  return dtype === "f32" ? "F32" : "U32";
}

function arrayName(dtype: SafeDType): string {
  switch (dtype) {
    case "F32":
      return "Float32Array";
    case "F64":
      return "Float64Array";
    case "U32":
      return "Uint32Array";
    case "I32":
      return "Int32Array";
    case "U16":
    case "F16":
    case "BF16":
      return "Uint16Array";
    case "I16":
      return "Int16Array";
    case "I8":
      return "Int8Array";
    case "I64":
      return "BigInt64Array";
    case "U64":
      return "BigUint64Array";
    case "BOOL":
    case "U8":
    case "F8_E5M2":
    case "F8_E4M3":
      return "Uint8Array";
  }
}

function fitsDType(dtype: SafeDType, data: TensorData): boolean {
  return Object.prototype.toString.call(data) === `[object ${arrayName(dtype)}]`;
}

/** A typed-array view of `count` elements; `byteOffset` must be element-aligned. */
function makeView(dtype: SafeDType, buf: ArrayBuffer, byteOffset: number, count: number) {
  switch (arrayName(dtype)) {
    case "Float32Array":
      return new Float32Array(buf, byteOffset, count);
    case "Float64Array":
      return new Float64Array(buf, byteOffset, count);
    case "Uint32Array":
      return new Uint32Array(buf, byteOffset, count);
    case "Int32Array":
      return new Int32Array(buf, byteOffset, count);
    case "Uint16Array":
      return new Uint16Array(buf, byteOffset, count);
    case "Int16Array":
      return new Int16Array(buf, byteOffset, count);
    case "Int8Array":
      return new Int8Array(buf, byteOffset, count);
    case "BigInt64Array":
      return new BigInt64Array(buf, byteOffset, count);
    case "BigUint64Array":
      return new BigUint64Array(buf, byteOffset, count);
    default:
      return new Uint8Array(buf, byteOffset, count);
  }
}

// Raw typed-array bytes are the file bytes only on a little-endian host; every
// platform WebGPU runs on is, but a silent byte swap would corrupt weights.
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function requireLittleEndian(path: string): void {
  if (!LITTLE_ENDIAN_HOST) {
    throw new CheckpointError(
      `Cannot read or write checkpoint ${path}: this host is big-endian and safetensors ` +
        `data is little-endian: run on a little-endian machine`,
    );
  }
}

function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------
// Types

/** One tensor on the host: what `writeCheckpoint` takes and `readCheckpoint` returns. */
export interface HostTensor {
  /** Element type. */
  dtype: SafeDType;
  /** Dims, outermost first; `[]` is a scalar (one element). */
  shape: readonly number[];
  /** Row-major elements; the array type must fit the dtype. */
  data: TensorData;
}

/** What a checkpoint holds. */
export interface CheckpointContents {
  /** Tensors by name (a Map or a plain record); written in sorted name order. */
  tensors: Map<string, HostTensor> | Record<string, HostTensor>;
  /** String metadata; `ssd.format` is added when absent. */
  metadata?: Record<string, string>;
}

/** Header entry of one tensor. */
export interface TensorInfo {
  /** Element type. */
  dtype: SafeDType;
  /** Dims, outermost first. */
  shape: number[];
  /** `[begin, end)` byte range relative to the data section. */
  dataOffsets: [number, number];
}

/** A validated header, without the tensor data. */
export interface CheckpointHeader {
  /** The file (or label) the header came from, for messages. */
  path: string;
  /** Size of the whole file in bytes. */
  fileBytes: number;
  /** Header length N (JSON plus padding). */
  headerBytes: number;
  /** Start of the data section in the file (8 + N). */
  dataStart: number;
  /** The `__metadata__` map (empty when the file has none). */
  metadata: Record<string, string>;
  /** Tensor entries in sorted name order. */
  tensors: Map<string, TensorInfo>;
}

/** Options of `readHeader`, `readCheckpoint` and `decodeCheckpoint`. */
export interface ReadOptions {
  /**
   * Accept a file with no `ssd.format` (a safetensors file from another tool), e.g. for
   * `inspect`; an unknown version is still rejected. Default false.
   */
  allowForeign?: boolean;
}

/** Options of `readCheckpoint`. */
export interface ReadCheckpointOptions extends ReadOptions {
  /** Read only the tensors whose name passes (e.g. skip `optim.*` for eval); default all. */
  filter?: (name: string) => boolean;
}

/** What `readCheckpoint` returns. */
export interface LoadedCheckpoint {
  /** Tensors in sorted name order; the arrays may share one ArrayBuffer. */
  tensors: Map<string, HostTensor>;
  /** The `__metadata__` map. */
  metadata: Record<string, string>;
  /** The validated header. */
  header: CheckpointHeader;
}

/** Options of `writeCheckpoint`. */
export interface WriteOptions {
  /**
   * Test hook, called after the temporary file is complete and fsynced and before it is
   * renamed over the target. Throwing here simulates a crash at the worst moment.
   */
  beforeRename?: () => void | Promise<void>;
}

/**
 * The data of an F32 tensor, typed as such (after `validateAgainstConfig`, every model
 * tensor is F32; this narrows the type and re-checks).
 *
 * @param t a tensor from `readCheckpoint`
 * @param name its name, for the message
 * @returns `t.data` as a Float32Array
 * @throws CheckpointError when the tensor is not F32
 */
export function f32Data(t: HostTensor, name = "tensor"): Float32Array {
  if (t.dtype !== "F32" || !(t.data instanceof Float32Array)) {
    throw new CheckpointError(
      `Checkpoint tensor ${q(name)} is ${t.dtype}, expected F32: convert the checkpoint to float32`,
    );
  }
  return t.data;
}

/**
 * The data of a U32 tensor, typed as such.
 *
 * @param t a tensor from `readCheckpoint`
 * @param name its name, for the message
 * @returns `t.data` as a Uint32Array
 * @throws CheckpointError when the tensor is not U32
 */
export function u32Data(t: HostTensor, name = "tensor"): Uint32Array {
  if (t.dtype !== "U32" || !(t.data instanceof Uint32Array)) {
    throw new CheckpointError(`Checkpoint tensor ${q(name)} is ${t.dtype}, expected U32`);
  }
  return t.data;
}

// ---------------------------------------------------------------------------
// Header parsing (shared by files and in-memory bytes)

/** Validates the 8-byte length prefix against the file size; returns N. */
function headerLength(path: string, prefix: Uint8Array, fileBytes: number): number {
  if (fileBytes < 8) {
    throw new CheckpointError(
      `Checkpoint ${path} is truncated or not a safetensors file: ${fileBytes} bytes, ` +
        `fewer than the 8-byte header length: ${CORRUPT_HINT}`,
    );
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new CheckpointError(
      `Checkpoint ${path} is corrupt or not a safetensors file: header length ${n} bytes ` +
        `exceeds the limit of ${MAX_HEADER_BYTES}: ${CORRUPT_HINT}`,
    );
  }
  const len = Number(n);
  if (len < 2) {
    throw corrupt(path, `header length ${len} bytes is too short for a JSON object`);
  }
  if (8 + len > fileBytes) {
    throw truncated(
      path,
      `header length is ${len} bytes but only ${fileBytes - 8} bytes follow the length prefix`,
    );
  }
  return len;
}

/** Parses and validates the header JSON (`bytes` = the N header bytes). */
function parseHeader(
  path: string,
  bytes: Uint8Array,
  fileBytes: number,
  opts: ReadOptions,
): CheckpointHeader {
  const headerBytes = bytes.length;
  const dataStart = 8 + headerBytes;
  const dataBytes = fileBytes - dataStart;

  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw corrupt(path, "header is not valid UTF-8");
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw corrupt(path, `header is not valid JSON (${oneLine((e as Error).message)})`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw corrupt(path, `header is ${describe(raw)}, not a JSON object`);
  }
  const obj = raw as Record<string, unknown>;

  // Metadata first: a newer format version may lay tensors out differently, and then the
  // version is the message the user needs, not a layout complaint.
  const metadata = parseMetadata(path, obj[METADATA_KEY]);
  const format = metadata[META_FORMAT];
  if (format === undefined) {
    if (!opts.allowForeign) {
      throw new CheckpointError(
        `Checkpoint ${path} has no ${q(META_FORMAT)} in its metadata, so ssd did not write ` +
          `it (supported format versions: ${SUPPORTED_FORMATS.join(", ")}): give a ` +
          `checkpoint saved by ssd, or look at it with \`ssd inspect\``,
      );
    }
  } else if (!SUPPORTED_FORMATS.includes(format)) {
    throw new CheckpointError(
      `Checkpoint ${path} has format version ${q(format)}, which this ssd cannot read ` +
        `(supported: ${SUPPORTED_FORMATS.join(", ")}): use the ssd version that wrote it, ` +
        `or upgrade ssd`,
    );
  }

  const entries: [string, TensorInfo][] = [];
  for (const [name, entry] of Object.entries(obj)) {
    if (name === METADATA_KEY) continue;
    entries.push([name, parseEntry(path, name, entry)]);
  }

  for (const [name, info] of entries) {
    const end = info.dataOffsets[1];
    if (end > dataBytes) {
      throw truncated(
        path,
        `tensor ${q(name)} ends at byte ${end} of the data section, which has only ` +
          `${dataBytes} bytes`,
      );
    }
  }

  // Cover check: sorted by range, each tensor must start where the ones before it ended.
  const byOffset = entries.slice().sort((a, b) =>
    a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]
  );
  let covered = 0;
  let coverer = "";
  for (const [name, info] of byOffset) {
    const [begin, end] = info.dataOffsets;
    if (begin < covered) {
      const other = entries.find(([n]) => n === coverer)![1].dataOffsets;
      throw corrupt(
        path,
        `tensors ${q(coverer)} ${fmtShape(other)} and ${q(name)} ${fmtShape([begin, end])} ` +
          `overlap in the data section`,
      );
    }
    if (begin > covered) {
      throw corrupt(
        path,
        `data bytes [${covered}, ${begin}) belong to no tensor (safetensors requires the ` +
          `data section to be covered without gaps)`,
      );
    }
    if (end > covered) {
      covered = end;
      coverer = name;
    }
  }
  if (covered < dataBytes) {
    throw corrupt(
      path,
      `${dataBytes - covered} trailing bytes after the last tensor (tensors cover ` +
        `${covered} of the ${dataBytes} data bytes)`,
    );
  }

  entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return { path, fileBytes, headerBytes, dataStart, metadata, tensors: new Map(entries) };
}

function parseMetadata(path: string, raw: unknown): Record<string, string> {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw corrupt(path, `${METADATA_KEY} is ${describe(raw)}, not an object of strings`);
  }
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== "string") {
      throw corrupt(
        path,
        `${METADATA_KEY}[${q(k)}] is ${describe(v)}, not a string (safetensors metadata ` +
          `values are strings)`,
      );
    }
  }
  // fromEntries defines own properties, so a key like "__proto__" stays a plain key.
  return Object.fromEntries(Object.entries(raw)) as Record<string, string>;
}

function parseEntry(path: string, name: string, entry: unknown): TensorInfo {
  if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
    throw corrupt(
      path,
      `tensor ${q(name)} has ${describe(entry)} as its entry, not ` +
        `{"dtype", "shape", "data_offsets"}`,
    );
  }
  const e = entry as Record<string, unknown>;
  const dtype = e.dtype;
  if (!isSafeDType(dtype)) {
    throw corrupt(
      path,
      `tensor ${q(name)} has unknown dtype ${json(dtype)} (known: ` +
        `${Object.keys(DTYPE_BYTES).join(", ")})`,
    );
  }
  const shape = e.shape;
  if (
    !Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)
  ) {
    throw corrupt(
      path,
      `tensor ${q(name)} has shape ${json(shape)}, not an array of non-negative integers`,
    );
  }
  const offsets = e.data_offsets;
  if (
    !Array.isArray(offsets) || offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]
  ) {
    throw corrupt(
      path,
      `tensor ${q(name)} has data_offsets ${json(offsets)}, not [begin, end] with ` +
        `0 <= begin <= end`,
    );
  }
  const need = numelOf(shape) * DTYPE_BYTES[dtype];
  const have = offsets[1] - offsets[0];
  if (have !== need) {
    throw corrupt(
      path,
      `tensor ${q(name)} has data_offsets ${fmtShape(offsets)} (${have} bytes) but ${dtype} ` +
        `${fmtShape(shape)} needs ${need} bytes`,
    );
  }
  return { dtype, shape: shape.map((d) => d + 0), dataOffsets: [offsets[0], offsets[1]] };
}

// ---------------------------------------------------------------------------
// Encoding

interface Layout {
  /** Length prefix + padded JSON header. */
  head: Uint8Array;
  /** Tensor bytes in file order. */
  chunks: Uint8Array[];
  total: number;
}

function bytesOf(data: TensorData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
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
    if (!fitsDType(t.dtype, t.data)) {
      throw fail(
        `tensor ${q(name)} is ${t.dtype} but its data is ` +
          `${Object.prototype.toString.call(t.data).slice(8, -1)}, not ${arrayName(t.dtype)}`,
      );
    }
    const n = numelOf(t.shape);
    if (t.data.length !== n) {
      throw fail(
        `tensor ${q(name)} has shape ${fmtShape(t.shape)} (${n} elements) but ` +
          `${t.data.length} values`,
      );
    }
    const bytes = bytesOf(t.data);
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

// ---------------------------------------------------------------------------
// Decoding from memory

/**
 * Parses and validates checkpoint bytes already in memory.
 *
 * @param bytes the whole file
 * @param opts `label` names the source in messages; `allowForeign` accepts files without `ssd.format`
 * @returns tensors (views into `bytes` where aligned, copies otherwise), metadata and header
 */
export function decodeCheckpoint(
  bytes: Uint8Array,
  opts: ReadOptions & { label?: string } = {},
): LoadedCheckpoint {
  const path = opts.label ?? "<memory>";
  requireLittleEndian(path);
  const n = headerLength(path, bytes.subarray(0, 8), bytes.length);
  const header = parseHeader(path, bytes.subarray(8, 8 + n), bytes.length, opts);
  const data = bytes.subarray(header.dataStart);
  return { tensors: tensorsFrom(header, data, 0), metadata: header.metadata, header };
}

/**
 * Builds host tensors over `data`, which holds the data section from byte `base` on.
 * Aligned tensors are views; a misaligned one (possible in files from other writers)
 * is copied, since typed arrays need element-aligned offsets.
 */
function tensorsFrom(
  header: CheckpointHeader,
  data: Uint8Array,
  base: number,
  filter?: (name: string) => boolean,
): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [name, info] of header.tensors) {
    if (filter && !filter(name)) continue;
    const [begin, end] = info.dataOffsets;
    const size = DTYPE_BYTES[info.dtype];
    const at = data.byteOffset + begin - base;
    let view: TensorData;
    if (at % size === 0 && data.buffer instanceof ArrayBuffer) {
      view = makeView(info.dtype, data.buffer, at, (end - begin) / size);
    } else {
      const copy = data.slice(begin - base, end - base);
      view = makeView(info.dtype, copy.buffer, 0, (end - begin) / size);
    }
    out.set(name, { dtype: info.dtype, shape: info.shape, data: view });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Files

async function openForRead(path: string): Promise<{ file: Deno.FsFile; size: number }> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new CheckpointError(
        `Checkpoint file not found: ${path}: check the path (\`ssd train --out DIR\` writes ` +
          `DIR/*.safetensors)`,
      );
    }
    throw new CheckpointError(
      `Cannot open checkpoint ${path}: ${oneLine((e as Error).message)}: check the path and ` +
        `its permissions`,
    );
  }
  try {
    const st = await file.stat();
    if (!st.isFile) {
      throw new CheckpointError(
        `Checkpoint ${path} is not a file: give the path of a .safetensors file`,
      );
    }
    return { file, size: st.size };
  } catch (e) {
    file.close();
    throw e;
  }
}

/** Reads exactly `buf.length` bytes at `pos`; returns the count read (short at EOF). */
async function readAt(file: Deno.FsFile, pos: number, buf: Uint8Array): Promise<number> {
  await file.seek(pos, Deno.SeekMode.Start);
  let got = 0;
  while (got < buf.length) {
    const n = await file.read(buf.subarray(got));
    if (n === null) break;
    got += n;
  }
  return got;
}

async function headerOf(
  path: string,
  file: Deno.FsFile,
  size: number,
  opts: ReadOptions,
): Promise<CheckpointHeader> {
  const prefix = new Uint8Array(8);
  const got = await readAt(file, 0, prefix);
  const n = headerLength(path, prefix, got < 8 ? got : size);
  const bytes = new Uint8Array(n);
  if (await readAt(file, 8, bytes) < n) {
    throw truncated(path, "the file ended while reading the header (was it being written?)");
  }
  return parseHeader(path, bytes, size, opts);
}

/**
 * Reads and validates a checkpoint's header without reading tensor data (for `inspect`
 * and for checking a checkpoint against a config before loading it).
 *
 * @param path the .safetensors file
 * @param opts `allowForeign` accepts safetensors files without `ssd.format`
 * @returns the header: metadata, tensor entries in sorted name order, sizes
 * @throws CheckpointError when the file is missing, truncated or corrupt
 */
export async function readHeader(path: string, opts: ReadOptions = {}): Promise<CheckpointHeader> {
  requireLittleEndian(path);
  const { file, size } = await openForRead(path);
  try {
    return await headerOf(path, file, size, opts);
  } finally {
    file.close();
  }
}

/**
 * Reads and validates a whole checkpoint.
 *
 * @param path the .safetensors file
 * @param opts `filter` selects tensors to read (others are skipped on disk); `allowForeign`
 * @returns tensors in sorted name order, metadata, and the header
 * @throws CheckpointError when the file is missing, truncated or corrupt
 */
export async function readCheckpoint(
  path: string,
  opts: ReadCheckpointOptions = {},
): Promise<LoadedCheckpoint> {
  requireLittleEndian(path);
  const { file, size } = await openForRead(path);
  try {
    const header = await headerOf(path, file, size, opts);
    const dataBytes = size - header.dataStart;
    const shortRead = () =>
      truncated(path, "the file ended while reading tensor data (was it being written?)");
    if (!opts.filter) {
      const data = new Uint8Array(dataBytes);
      if (await readAt(file, header.dataStart, data) < dataBytes) throw shortRead();
      return { tensors: tensorsFrom(header, data, 0), metadata: header.metadata, header };
    }
    const tensors = new Map<string, HostTensor>();
    for (const [name, info] of header.tensors) {
      if (!opts.filter(name)) continue;
      const [begin, end] = info.dataOffsets;
      const buf = new Uint8Array(end - begin);
      if (await readAt(file, header.dataStart + begin, buf) < buf.length) throw shortRead();
      const one = new Map([[name, info]]);
      const t = tensorsFrom({ ...header, tensors: one }, buf, begin).get(name)!;
      tensors.set(name, t);
    }
    return { tensors, metadata: header.metadata, header };
  } finally {
    file.close();
  }
}

/** Batches small writes into one buffer; large chunks go straight to the file. */
class BufferedWriter {
  #file: Deno.FsFile;
  #buf = new Uint8Array(WRITE_BUFFER_BYTES);
  #used = 0;

  constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.#used + chunk.length <= this.#buf.length) {
      this.#buf.set(chunk, this.#used);
      this.#used += chunk.length;
      return;
    }
    await this.flush();
    if (chunk.length >= this.#buf.length) await this.#writeAll(chunk);
    else {
      this.#buf.set(chunk, 0);
      this.#used = chunk.length;
    }
  }

  async flush(): Promise<void> {
    await this.#writeAll(this.#buf.subarray(0, this.#used));
    this.#used = 0;
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.length) done += await this.#file.write(bytes.subarray(done));
  }
}

function tempName(path: string): string {
  const rand = Array.from(
    crypto.getRandomValues(new Uint8Array(6)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  return join(dirname(path), `.${basename(path)}.tmp-${Deno.pid}-${rand}`);
}

/** True for the name of a temporary file `writeCheckpoint` makes (left only by a killed process). */
export function isCheckpointTemp(fileName: string): boolean {
  return /^\..+\.tmp-\d+-[0-9a-f]{12}$/.test(fileName);
}

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
  const tmp = tempName(path);
  let file: Deno.FsFile | null = null;
  try {
    file = await Deno.open(tmp, { write: true, createNew: true });
    const w = new BufferedWriter(file);
    await w.write(head);
    for (const c of chunks) await w.write(c);
    await w.flush();
    await file.sync();
    file.close();
    file = null;
    await opts.beforeRename?.();
    await Deno.rename(tmp, path);
  } catch (e) {
    if (file) {
      try {
        file.close();
      } catch { /* already closed */ }
    }
    await Deno.remove(tmp).catch(() => {});
    throw saveError(path, e);
  }
  await syncDir(dirname(path));
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

/** Makes the rename durable; not every platform can open a folder, so failure is ignored. */
async function syncDir(dir: string): Promise<void> {
  try {
    const d = await Deno.open(dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  } catch { /* best effort */ }
}
