/**
 * Buffer pool: storage buffers reused by size class.
 *
 * Size classes are powers of two split into quarters (…, 1024, 1280, 1536,
 * 1792, 2048, …), so a request wastes at most 25%. A released buffer goes to
 * its class's free list and is handed to the next request of that class.
 *
 * Immediate reuse is safe because every write to a pooled buffer is recorded
 * in the command stream (dispatches, and copies from staging buffers for
 * uploads), so it executes after every earlier recorded read of the old
 * contents. Nothing here calls `queue.writeBuffer` on a pooled buffer.
 */

/** Usage of every pooled buffer: kernels read and write it, copies move data in and out. */
export const POOL_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
  GPUBufferUsage.COPY_DST;

/** Smallest buffer handed out, in bytes. */
export const MIN_BUFFER_BYTES = 256;

/** Live and pooled buffer counts, for leak tests and `ssd device`. */
export interface PoolStats {
  /** Buffers handed out and not yet released. */
  liveBuffers: number;
  /** Bytes of the live buffers (their size class, not the request). */
  liveBytes: number;
  /** Released buffers waiting for reuse. */
  pooledBuffers: number;
  /** Bytes of the pooled buffers. */
  pooledBytes: number;
  /** Buffers ever created by the pool (reuse keeps this flat). */
  created: number;
}

/** Rounds a byte count up to its size class. */
export function sizeClass(bytes: number): number {
  const n = Math.max(MIN_BUFFER_BYTES, Math.ceil(bytes));
  const pow = 2 ** Math.floor(Math.log2(n));
  const step = Math.max(pow / 4, 4);
  return Math.ceil(n / step) * step;
}

/** Reuses GPU storage buffers by size class. */
export class BufferPool {
  #device: GPUDevice;
  #free = new Map<number, GPUBuffer[]>();
  #live = new Set<GPUBuffer>();
  #liveBytes = 0;
  #pooledBytes = 0;
  #pooledCount = 0;
  #created = 0;

  /** An empty pool allocating from `device`. */
  constructor(device: GPUDevice) {
    this.#device = device;
  }

  /** A buffer of at least `bytes` bytes; contents are undefined. */
  acquire(bytes: number, label = "pool"): GPUBuffer {
    const size = sizeClass(bytes);
    const list = this.#free.get(size);
    let buf = list?.pop();
    if (buf) {
      this.#pooledBytes -= size;
      this.#pooledCount--;
    } else {
      buf = this.#device.createBuffer({ size, usage: POOL_USAGE, label });
      this.#created++;
    }
    this.#live.add(buf);
    this.#liveBytes += size;
    return buf;
  }

  /** Returns a buffer for reuse. Releasing twice or a foreign buffer is a bug and throws. */
  release(buf: GPUBuffer): void {
    if (!this.#live.delete(buf)) {
      throw new Error("BufferPool.release(): buffer is not live (double release?)");
    }
    const size = buf.size;
    this.#liveBytes -= size;
    let list = this.#free.get(size);
    if (!list) this.#free.set(size, list = []);
    list.push(buf);
    this.#pooledBytes += size;
    this.#pooledCount++;
  }

  /** Destroys every pooled (free) buffer, returning their memory to the driver. */
  trim(): void {
    for (const list of this.#free.values()) for (const b of list) b.destroy();
    this.#free.clear();
    this.#pooledBytes = 0;
    this.#pooledCount = 0;
  }

  /**
   * Destroys every buffer the pool made, live or free: the runtime's
   * shutdown, after which the pool must not be used.
   */
  destroyAll(): void {
    this.trim();
    for (const b of this.#live) b.destroy();
    this.#live.clear();
    this.#liveBytes = 0;
  }

  /** Current counts. */
  stats(): PoolStats {
    return {
      liveBuffers: this.#live.size,
      liveBytes: this.#liveBytes,
      pooledBuffers: this.#pooledCount,
      pooledBytes: this.#pooledBytes,
      created: this.#created,
    };
  }
}
