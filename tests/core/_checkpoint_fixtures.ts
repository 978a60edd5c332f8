/**
 * Shared fixtures of the checkpoint tests: temp folders, the one-line
 * CheckpointError assertions, an independent hand-built safetensors writer,
 * little-endian encoders and a sample checkpoint with every awkward case in it.
 */
import assert from "node:assert/strict";
import {
  decodeCheckpoint,
  type HostTensor,
  optimMName,
  readCheckpoint,
  readHeader,
  ssdMetadata,
} from "../../core/checkpoint.ts";
import { CheckpointError } from "../../core/errors.ts";

// ---------------------------------------------------------------------------
// Helpers

export async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ssd_ckpt_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

export async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

/** Asserts a CheckpointError whose single-line message contains every `parts`. */
export function assertCkptError(e: unknown, ...parts: string[]): void {
  assert.ok(e instanceof CheckpointError, `expected CheckpointError, got ${e}`);
  assert.ok(!e.message.includes("\n"), `message is not one line: ${e.message}`);
  for (const p of parts) {
    assert.ok(e.message.includes(p), `message lacks ${JSON.stringify(p)}: ${e.message}`);
  }
}

export function decodeRejects(bytes: Uint8Array, ...parts: string[]): void {
  let err: unknown = null;
  try {
    decodeCheckpoint(bytes, { label: "mem.safetensors" });
  } catch (e) {
    err = e;
  }
  assert.ok(err !== null, `decode accepted bad bytes; expected ${parts.join(", ")}`);
  assertCkptError(err, "mem.safetensors", ...parts);
}

export async function readRejects(path: string, ...parts: string[]): Promise<void> {
  for (const read of [() => readHeader(path), () => readCheckpoint(path)]) {
    let err: unknown = null;
    try {
      await read();
    } catch (e) {
      err = e;
    }
    assert.ok(err !== null, `read accepted ${path}; expected ${parts.join(", ")}`);
    assertCkptError(err, path, ...parts);
  }
}

export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
}

export function f32(...v: number[]): Float32Array {
  return Float32Array.from(v);
}

/** Tensor spec of the independent writer: bytes given raw, in data-section order. */
export interface RawEntry {
  name: string;
  dtype: string;
  shape: unknown;
  bytes: Uint8Array;
  offsets?: unknown;
}

/**
 * An independent safetensors writer, laid out as the Python `safetensors` package does
 * it (json.dumps separators ", " and ": ", tensors in the given data order, metadata
 * where asked), sharing no code with core/checkpoint.ts. `pad` pads the header with
 * spaces to a multiple of 8; `headerText` replaces the JSON outright.
 */
export function handBuild(
  entries: RawEntry[],
  opts: {
    metadata?: Record<string, unknown> | null;
    metaFirst?: boolean;
    pad?: boolean;
    headerText?: string;
    extraData?: Uint8Array;
  } = {},
): Uint8Array {
  const meta = opts.metadata === undefined ? { "ssd.format": "1" } : opts.metadata;
  const parts: string[] = [];
  let offset = 0;
  for (const e of entries) {
    const offsets = e.offsets ?? [offset, offset + e.bytes.length];
    parts.push(
      `"${e.name}": {"dtype": "${e.dtype}", "shape": ${JSON.stringify(e.shape)}, ` +
        `"data_offsets": ${JSON.stringify(offsets)}}`,
    );
    offset += e.bytes.length;
  }
  if (meta !== null) {
    const m = `"__metadata__": ${JSON.stringify(meta).replaceAll('","', '", "')}`;
    if (opts.metaFirst) parts.unshift(m);
    else parts.push(m);
  }
  let text = opts.headerText ?? `{${parts.join(", ")}}`;
  if (opts.pad) text += " ".repeat((8 - (new TextEncoder().encode(text).length % 8)) % 8);
  const header = new TextEncoder().encode(text);
  const extra = opts.extraData ?? new Uint8Array(0);
  const out = new Uint8Array(8 + header.length + offset + extra.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, header.length, true);
  dv.setUint32(4, 0, true);
  out.set(header, 8);
  let at = 8 + header.length;
  for (const e of entries) {
    out.set(e.bytes, at);
    at += e.bytes.length;
  }
  out.set(extra, at);
  return out;
}

/** Little-endian bytes of f32 values, computed with DataView (not typed-array aliasing). */
export function leF32(...v: number[]): Uint8Array {
  const out = new Uint8Array(4 * v.length);
  const dv = new DataView(out.buffer);
  v.forEach((x, i) => dv.setFloat32(4 * i, x, true));
  return out;
}

export function leU32(...v: number[]): Uint8Array {
  const out = new Uint8Array(4 * v.length);
  const dv = new DataView(out.buffer);
  v.forEach((x, i) => dv.setUint32(4 * i, x, true));
  return out;
}

/** A small model-like checkpoint with every awkward case in it. */
export function sampleContents(): {
  tensors: Map<string, HostTensor>;
  metadata: Record<string, string>;
} {
  const tensors = new Map<string, HostTensor>();
  tensors.set("transformer.wte.weight", {
    dtype: "F32",
    shape: [5, 3],
    data: Float32Array.from({ length: 15 }, (_, i) => Math.sin(i) * 1e3),
  });
  tensors.set("transformer.h.0.mlp.c_fc.bias", {
    dtype: "F32",
    shape: [7],
    data: new Float32Array(7).fill(-0.5),
  });
  tensors.set(optimMName("transformer.wte.weight"), {
    dtype: "F32",
    shape: [5, 3],
    data: Float32Array.from({ length: 15 }, (_, i) => i / 7),
  });
  tensors.set("perm", { dtype: "U32", shape: [4], data: Uint32Array.from([3, 0, 0xffffffff, 1]) });
  tensors.set("empty", { dtype: "F32", shape: [0], data: new Float32Array(0) });
  tensors.set("empty2d", { dtype: "U32", shape: [3, 0], data: new Uint32Array(0) });
  tensors.set("scalar", { dtype: "F32", shape: [], data: f32(2.5) });
  // Integer-like names: JS objects enumerate these first, which must not leak into the order.
  tensors.set("10", { dtype: "U32", shape: [1], data: Uint32Array.from([10]) });
  tensors.set("2", { dtype: "U32", shape: [1], data: Uint32Array.from([2]) });
  tensors.set("naïve.ü", { dtype: "F32", shape: [1, 1], data: f32(1) });
  const metadata = ssdMetadata({
    config: { vocab: 256, ctx: 16, d_model: 3, n_layer: 1, n_head: 1, d_ff: 7, bias: true },
    moe: { experts: 1, top_k: 1, router: "centroid", perm: [[0, 1, 2, 3, 4, 5, 6]] },
    train: { step: 12, lr: 0.1 + 0.2, rng: [1, 2, 3, 4294967295] },
  }, { "0": "zero", "zz": "last" });
  return { tensors, metadata };
}

// ---------------------------------------------------------------------------
// Format and determinism
