/**
 * Tensor: a shape, a dtype and GPU storage from the buffer pool, plus the
 * autograd fields (`requiresGrad`, `grad`). Tensors are immutable once made:
 * ops return new tensors, and gradients accumulate out of place, so views
 * and shared gradients never alias a buffer that is written again.
 *
 * Storage is reference-counted: `reshape` makes a view sharing it, and the
 * buffer returns to the pool when the last tensor on it is released.
 */
import { gpu } from "../gpu/runtime.ts";
import { fillKernel } from "../gpu/kernels/fill.ts";
import { fmtShape, ShapeError, TensorError } from "./errors.ts";
import { type Owned, track } from "./scope.ts";

/** Element type: f32 for values, u32 for indices (token ids, expert ids). */
export type DType = "f32" | "u32";

interface Storage {
  buffer: GPUBuffer;
  refs: number;
}

/** Number of elements of a shape. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkShape(shape: readonly number[]): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new ShapeError(`Invalid shape ${fmtShape(shape)}: dims must be non-negative integers`);
    }
  }
}

let nextId = 0;

/** An n-d array in GPU memory. */
export class Tensor implements Owned {
  /** Dims, outermost first. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
  /** Number of elements. */
  readonly size: number;
  /** Unique id, for debugging and error messages. */
  readonly id: number;
  /** Whether gradients flow to this tensor. */
  requiresGrad: boolean;
  /** Accumulated gradient (same shape), set by `backward`. */
  grad: Tensor | null = null;
  /** Optional name (parameters carry their checkpoint name). */
  name: string;
  #storage: Storage | null;

  /** Wraps existing storage; use the factories (`tensor`, `empty`, `zeros`) instead. */
  constructor(
    shape: readonly number[],
    dtype: DType,
    storage: { buffer: GPUBuffer; refs: number },
    requiresGrad = false,
  ) {
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.size = numel(shape);
    this.#storage = storage;
    this.requiresGrad = requiresGrad;
    this.id = nextId++;
    this.name = `t${this.id}`;
    track(this);
  }

  /** The GPU buffer; throws if the tensor was released. */
  get buffer(): GPUBuffer {
    if (!this.#storage) {
      throw new TensorError(`Tensor ${this.name} ${fmtShape(this.shape)} used after release()`);
    }
    return this.#storage.buffer;
  }

  /** Size in bytes of the data (not of the pooled buffer). */
  get bytes(): number {
    return this.size * 4;
  }

  /** True once released. */
  get released(): boolean {
    return this.#storage === null;
  }

  /** Returns the storage to the pool when no other view holds it; idempotent. */
  release(): void {
    const s = this.#storage;
    if (!s) return;
    this.#storage = null;
    if (--s.refs === 0) gpu().pool.release(s.buffer);
  }

  /** Same storage, another shape (element count must match). No gradient link: see `reshape` op. */
  view(shape: readonly number[]): Tensor {
    checkShape(shape);
    if (numel(shape) !== this.size) {
      throw new ShapeError(
        `Cannot view ${fmtShape(this.shape)} as ${fmtShape(shape)}: element counts differ`,
      );
    }
    const s = this.#storage;
    if (!s) this.buffer; // throws the used-after-release error
    s!.refs++;
    return new Tensor(shape, this.dtype, s!);
  }

  /** Copies the data to the host (one host wait). */
  async toArray(): Promise<Float32Array | Uint32Array> {
    if (this.size === 0) return this.dtype === "u32" ? new Uint32Array(0) : new Float32Array(0);
    const bytes = await gpu().recorder.read(this.buffer, 0, this.bytes);
    return this.dtype === "u32" ? new Uint32Array(bytes) : new Float32Array(bytes);
  }

  /** The f32 data on the host; throws for u32 tensors. */
  async data(): Promise<Float32Array> {
    if (this.dtype !== "f32") {
      throw new TensorError(`data() needs an f32 tensor, got ${this.dtype}`);
    }
    return (await this.toArray()) as Float32Array;
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) {
      throw new ShapeError(`item() needs one element, tensor has shape ${fmtShape(this.shape)}`);
    }
    return (await this.toArray())[0];
  }

  /** Short description for errors and logs. */
  toString(): string {
    return `Tensor(${this.name}, ${fmtShape(this.shape)}, ${this.dtype})`;
  }
}

/** Reads several tensors with one host wait. */
export async function readAll(ts: Tensor[]): Promise<(Float32Array | Uint32Array)[]> {
  const bufs = await gpu().recorder.readMany(
    ts.map((t) => ({ buffer: t.buffer, size: t.bytes })),
  );
  return bufs.map((b, i) => ts[i].dtype === "u32" ? new Uint32Array(b) : new Float32Array(b));
}

/** Throws a `TensorError` naming the op if any input was released. */
export function assertLive(op: string, ...ts: Tensor[]): void {
  ts.forEach((t, i) => {
    if (t.released) {
      throw new TensorError(
        `${op}: input ${i} (${t.name} ${fmtShape(t.shape)}) was used after release()`,
      );
    }
  });
}

/** An uninitialised tensor. */
export function empty(shape: readonly number[], dtype: DType = "f32"): Tensor {
  checkShape(shape);
  const buffer = gpu().pool.acquire(numel(shape) * 4);
  return new Tensor(shape, dtype, { buffer, refs: 1 });
}

/** A tensor filled with `value` on the GPU. */
export function full(shape: readonly number[], value: number, dtype: DType = "f32"): Tensor {
  const t = empty(shape, dtype);
  fillKernel(gpu(), t.buffer, t.size, value, dtype);
  return t;
}

/** A tensor of zeros. */
export function zeros(shape: readonly number[], dtype: DType = "f32"): Tensor {
  return full(shape, 0, dtype);
}

/** Options of `tensor()`. */
export interface TensorOptions {
  /** Element type (default f32; u32 for indices). */
  dtype?: DType;
  /** Track gradients for this tensor (a leaf of the graph). */
  requiresGrad?: boolean;
  /** Name used in errors and checkpoints. */
  name?: string;
}

/** Uploads host data as a new tensor. */
export function tensor(
  data: ArrayLike<number>,
  shape: readonly number[],
  opts: TensorOptions = {},
): Tensor {
  const dtype = opts.dtype ?? "f32";
  checkShape(shape);
  if (data.length !== numel(shape)) {
    throw new ShapeError(
      `tensor(): ${data.length} values do not fill shape ${fmtShape(shape)}`,
    );
  }
  const t = empty(shape, dtype);
  const host = dtype === "u32" ? Uint32Array.from(data) : Float32Array.from(data);
  gpu().recorder.upload(t.buffer, host);
  t.requiresGrad = opts.requiresGrad ?? false;
  if (opts.name) t.name = opts.name;
  return t;
}
