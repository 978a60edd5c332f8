/**
 * Reading safetensors checkpoints (format: core/safetensors.ts), from a file or from
 * bytes in memory, with every check of the format: the header (bounds, dtypes,
 * coverage, version) and the values (no NaN or Inf in a float tensor: a model loaded
 * with one computes garbage that can look plausible, e.g. a NaN masked by ReLU).
 *
 * A path is `stat`ed before it is opened: opening a FIFO or a device for reading
 * blocks until a writer appears, so a wrong path could hang `ssd` forever.
 */
import { CheckpointError } from "./errors.ts";
import { oneLine, truncated } from "./_checkpoint_util.ts";
import {
  arrayOf,
  type CheckpointHeader,
  DTYPE_BYTES,
  headerLength,
  type HostTensor,
  type LoadedCheckpoint,
  parseHeader,
  type ReadCheckpointOptions,
  type ReadOptions,
  requireLittleEndian,
} from "./safetensors.ts";

/**
 * Parses and validates checkpoint bytes already in memory.
 *
 * @param bytes the whole file
 * @param opts `label` names the source in messages; `allowForeign` accepts files without
 *   `ssd.format`; `allowNonFinite` accepts NaN / Inf values
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
  const tensors = new Map<string, HostTensor>();
  for (const name of header.tensors.keys()) {
    tensors.set(name, tensorAt(header, name, data, 0, opts));
  }
  return { tensors, metadata: header.metadata, header };
}

/**
 * The host tensor `name` of `header` over `data`, which holds the data section from
 * byte `base` on. An aligned tensor is a view; a misaligned one (possible in files from
 * other writers) is copied, since typed arrays need element-aligned offsets.
 *
 * @throws CheckpointError when an F32 tensor holds NaN or Inf (unless `allowNonFinite`)
 */
function tensorAt(
  header: CheckpointHeader,
  name: string,
  data: Uint8Array,
  base: number,
  opts: ReadOptions,
): HostTensor {
  const info = header.tensors.get(name)!;
  const [begin, end] = info.dataOffsets;
  const size = DTYPE_BYTES[info.dtype];
  const at = data.byteOffset + begin - base;
  const Ctor = arrayOf(info.dtype);
  const view = at % size === 0 && data.buffer instanceof ArrayBuffer
    ? new Ctor(data.buffer, at, (end - begin) / size)
    : new Ctor(data.slice(begin - base, end - base).buffer);
  if (view instanceof Float32Array && !opts.allowNonFinite && !allFinite(view)) {
    throw new CheckpointError(
      `Checkpoint ${header.path}: tensor ${oneLine(name)} holds NaN or Inf values: the run that ` +
        `saved it diverged or the file is damaged: use an earlier checkpoint`,
    );
  }
  return { dtype: info.dtype, shape: info.shape, data: view };
}

function allFinite(a: Float32Array): boolean {
  // x - x is 0 for every finite x and NaN for NaN and ±Inf.
  for (let i = 0; i < a.length; i++) if (a[i] - a[i] !== 0) return false;
  return true;
}

// ---------------------------------------------------------------------------
// Files

/** Stats `path` (without opening it) and opens it only when it is a regular file. */
async function openForRead(path: string): Promise<{ file: Deno.FsFile; size: number }> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new CheckpointError(
        `Checkpoint file not found: ${path}: check the path (\`ssd train --out DIR\` writes ` +
          `DIR/*.safetensors)`,
      );
    }
    throw cannotOpen(path, e);
  }
  if (!st.isFile) {
    const kind = st.isDirectory ? "a folder" : "a pipe, socket or device";
    throw new CheckpointError(
      `Checkpoint ${path} is not a file (it is ${kind}): give the path of a .safetensors file`,
    );
  }
  try {
    return { file: await Deno.open(path, { read: true }), size: st.size };
  } catch (e) {
    throw cannotOpen(path, e);
  }
}

function cannotOpen(path: string, e: unknown): CheckpointError {
  return new CheckpointError(
    `Cannot open checkpoint ${path}: ${oneLine((e as Error).message)}: check the path and ` +
      `its permissions`,
  );
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
 * @throws CheckpointError when the file is missing, not a regular file, truncated or corrupt
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
 * @param opts `filter` selects tensors to read (others are skipped on disk);
 *   `allowForeign`, `allowNonFinite`
 * @returns tensors in sorted name order, metadata, and the header
 * @throws CheckpointError when the file is missing, not a regular file, truncated or
 *   corrupt, or a float tensor holds NaN or Inf
 */
export async function readCheckpoint(
  path: string,
  opts: ReadCheckpointOptions = {},
): Promise<LoadedCheckpoint> {
  requireLittleEndian(path);
  const { file, size } = await openForRead(path);
  try {
    const header = await headerOf(path, file, size, opts);
    const shortRead = () =>
      truncated(path, "the file ended while reading tensor data (was it being written?)");
    const tensors = new Map<string, HostTensor>();
    if (!opts.filter) {
      const data = new Uint8Array(size - header.dataStart);
      if (await readAt(file, header.dataStart, data) < data.length) throw shortRead();
      for (const name of header.tensors.keys()) {
        tensors.set(name, tensorAt(header, name, data, 0, opts));
      }
      return { tensors, metadata: header.metadata, header };
    }
    for (const [name, info] of header.tensors) {
      if (!opts.filter(name)) continue;
      const [begin, end] = info.dataOffsets;
      const buf = new Uint8Array(end - begin);
      if (await readAt(file, header.dataStart + begin, buf) < buf.length) throw shortRead();
      tensors.set(name, tensorAt(header, name, buf, begin, opts));
    }
    return { tensors, metadata: header.metadata, header };
  } finally {
    file.close();
  }
}
