/**
 * The safetensors file format of checkpoints: its dtypes, types and header
 * validation. Reading (core/safetensors_read.ts) and writing (core/safetensors_write.ts)
 * build on it; ssd's metadata keys, the AdamW moment names and the check against a
 * model config are core/checkpoint.ts.
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
 * Only the dtypes ssd reads and writes are accepted (`DTYPES`); a file with any other
 * is refused naming it, since no caller could use its data.
 *
 * The header check validates everything it can without the model (structure, bounds,
 * dtypes, coverage, format version); `validateAgainstConfig` (core/checkpoint.ts) then
 * checks names and shapes against a model. Every failure is a one-line
 * `CheckpointError` naming the file.
 */
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

/** The reserved header key of the string→string metadata map. */
export const METADATA_KEY = "__metadata__";

/** A safetensors dtype ssd reads and writes (the keys of `DTYPES`). */
export type SafeDType = "F32" | "U32" | "U8";

/**
 * The dtypes ssd reads and writes, with their host array: F32 for weights and moments,
 * U32 for index tensors, U8 for byte masks of files from other tools.
 */
const DTYPES: Readonly<
  Record<SafeDType, typeof Float32Array | typeof Uint32Array | typeof Uint8Array>
> = Object.freeze({
  F32: Float32Array,
  U32: Uint32Array,
  U8: Uint8Array,
});

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Readonly<Record<SafeDType, number>> = Object.freeze(
  Object.fromEntries(
    Object.entries(DTYPES).map(([k, a]) => [k, a.BYTES_PER_ELEMENT]),
  ) as Record<SafeDType, number>,
);

/** Host array holding a tensor's elements; its type must fit the dtype (see `SafeDType`). */
export type TensorData = Float32Array | Uint32Array | Uint8Array;

/** True for a dtype name this code reads and writes. */
export function isSafeDType(s: unknown): s is SafeDType {
  return typeof s === "string" && Object.hasOwn(DTYPES, s);
}

const KNOWN_DTYPES = Object.keys(DTYPES).join(", ");

/** The host array class of a dtype. */
export function arrayOf(dtype: SafeDType): (typeof DTYPES)[SafeDType] {
  return DTYPES[dtype];
}

// Raw typed-array bytes are the file bytes only on a little-endian host; every
// platform WebGPU runs on is, but a silent byte swap would corrupt weights.
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** @throws CheckpointError on a big-endian host */
export function requireLittleEndian(path: string): void {
  if (!LITTLE_ENDIAN_HOST) {
    throw new CheckpointError(
      `Cannot read or write checkpoint ${path}: this host is big-endian and safetensors ` +
        `data is little-endian: run on a little-endian machine`,
    );
  }
}

/** Elements of a shape (1 for a scalar). */
export function numelOf(shape: readonly number[]): number {
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
  /**
   * Accept F32 tensors holding NaN or ±Inf (to look at a diverged run's bits); by
   * default they are refused, since every model computation would turn them into
   * garbage. Default false.
   */
  allowNonFinite?: boolean;
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

/**
 * Validates the 8-byte length prefix against the file size; returns N.
 *
 * @param path the file, for messages
 * @param prefix the first 8 bytes (fewer when the file is shorter)
 * @param fileBytes size of the whole file
 * @throws CheckpointError on a short file, an absurd length or one beyond the file
 */
export function headerLength(path: string, prefix: Uint8Array, fileBytes: number): number {
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

/**
 * Parses and validates the header JSON.
 *
 * @param path the file, for messages
 * @param bytes the N header bytes
 * @param fileBytes size of the whole file, for the bounds of the data section
 * @param opts `allowForeign` accepts a file without `ssd.format`
 * @throws CheckpointError naming the first problem
 */
export function parseHeader(
  path: string,
  bytes: Uint8Array,
  fileBytes: number,
  opts: ReadOptions,
): CheckpointHeader {
  const headerBytes = bytes.length;
  const dataStart = 8 + headerBytes;
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
  checkFormat(path, metadata[META_FORMAT], opts);

  const entries: [string, TensorInfo][] = [];
  for (const [name, entry] of Object.entries(obj)) {
    if (name === METADATA_KEY) continue;
    entries.push([name, parseEntry(path, name, entry)]);
  }
  checkCoverage(path, entries, fileBytes - dataStart);
  entries.sort((a, b) => byName(a[0], b[0]));
  return { path, fileBytes, headerBytes, dataStart, metadata, tensors: new Map(entries) };
}

function checkFormat(path: string, format: string | undefined, opts: ReadOptions): void {
  if (format === undefined) {
    if (opts.allowForeign) return;
    throw new CheckpointError(
      `Checkpoint ${path} has no ${q(META_FORMAT)} in its metadata, so ssd did not write ` +
        `it (supported format versions: ${SUPPORTED_FORMATS.join(", ")}): give a ` +
        `checkpoint saved by ssd, or look at it with \`ssd inspect\``,
    );
  }
  if (!SUPPORTED_FORMATS.includes(format)) {
    throw new CheckpointError(
      `Checkpoint ${path} has format version ${q(format)}, which this ssd cannot read ` +
        `(supported: ${SUPPORTED_FORMATS.join(", ")}): use the ssd version that wrote it, ` +
        `or upgrade ssd`,
    );
  }
}

/**
 * Checks that the tensors' byte ranges cover the data section exactly: every range
 * inside it, sorted by range each one starting where the ones before it ended (no
 * overlap, no gap), and nothing after the last.
 *
 * @param path the file, for messages
 * @param entries the header's tensor entries, in any order
 * @param dataBytes size of the data section
 * @throws CheckpointError naming the first range out of bounds, overlap, gap or tail
 */
export function checkCoverage(
  path: string,
  entries: readonly (readonly [string, TensorInfo])[],
  dataBytes: number,
): void {
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
  const byOffset = entries.slice().sort((a, b) =>
    a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]
  );
  let covered = 0;
  let coverer: readonly [string, TensorInfo] | null = null;
  for (const entry of byOffset) {
    const [name, { dataOffsets: [begin, end] }] = entry;
    if (begin < covered) {
      throw corrupt(
        path,
        `tensors ${q(coverer![0])} ${fmtShape(coverer![1].dataOffsets)} and ${q(name)} ` +
          `${fmtShape([begin, end])} overlap in the data section`,
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
      coverer = entry;
    }
  }
  if (covered < dataBytes) {
    throw corrupt(
      path,
      `${dataBytes - covered} trailing bytes after the last tensor (tensors cover ` +
        `${covered} of the ${dataBytes} data bytes)`,
    );
  }
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
    throw new CheckpointError(
      `Checkpoint ${path}: tensor ${q(name)} has dtype ${json(dtype)}, which ssd does not ` +
        `read (it reads ${KNOWN_DTYPES}): convert the checkpoint to float32`,
    );
  }
  const shape = e.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
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
