/**
 * Command recorder: every dispatch, copy and upload of a step goes into one
 * command encoder, and the encoder is submitted only when a result must be
 * read back (or on an explicit flush). On software adapters every host wait
 * (`mapAsync`, `onSubmittedWorkDone`) costs ~12 ms whatever the work, so a
 * training step should wait exactly once.
 *
 * Params live in a uniform arena: 256-byte slots in a few 64 KiB buffers,
 * filled on the CPU while recording and written with `queue.writeBuffer`
 * just before the submit that uses them. Queue order makes reuse of the arena
 * by the next batch safe: its write is queued after the previous submit.
 *
 * Uploads go through a mapped staging buffer and a recorded copy, so they
 * are ordered with the dispatches around them (a `queue.writeBuffer` would
 * jump ahead of everything recorded but not yet submitted).
 */
import { DEBUG_LEVEL } from "./debug.ts";
import type { GpuDevice } from "./device.ts";
import { GpuError } from "./errors.ts";
import type { Constants, Kernel } from "./kernel.ts";
import type { PipelineCache } from "./pipeline_cache.ts";
import { flatGrid, type Params } from "./util.ts";

const ARENA_CHUNK_BYTES = 64 * 1024;
const MAX_PARAM_BYTES = 256;
/** Timestamp pairs per profiling query set (WebGPU caps a query set at 4096 queries). */
const PROFILE_QUERIES = 2048;

/** A buffer, a byte range of one, or a texture view, bound to a kernel. */
export type Binding =
  | GPUBuffer
  | { buffer: GPUBuffer; offset?: number; size?: number }
  | GPUTextureView;

/** Bind groups kept per pipeline before its cache is cleared (bounds memory). */
const MAX_CACHED_BIND_GROUPS = 2048;

/** One dispatch. */
export interface DispatchArgs {
  /** The kernel to run. */
  kernel: Kernel;
  /** Override constants (tile shape, flags); part of the pipeline cache key. */
  constants?: Constants;
  /** Group 0 storage bindings: inputs, then outputs. */
  buffers: Binding[];
  /** Group 1 uniform params, if the kernel declares them. */
  params?: Params;
  /** Workgroup counts. */
  workgroups: [number, number?, number?];
}

/** Counters: what the recorder did since it was created. */
export interface RecorderStats {
  /** Dispatches recorded. */
  dispatches: number;
  /** Command buffers submitted. */
  submits: number;
  /** Times the host waited for the GPU (mapAsync / onSubmittedWorkDone). */
  hostWaits: number;
}

/** GPU time per kernel name, from timestamp queries. */
export type KernelTimes = Map<string, { ms: number; count: number }>;

interface ProfileBatch {
  names: string[];
  readback: GPUBuffer;
}

/** Records a step's GPU work into one encoder; submits on demand. */
export class Recorder {
  #gpu: GpuDevice;
  #device: GPUDevice;
  #pipelines: PipelineCache;
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #arena: GPUBuffer[] = [];
  #arenaCpu = new Uint8Array(ARENA_CHUNK_BYTES);
  #arenaChunk = 0;
  #arenaOffset = 0;
  #arenaAlign: number;
  #staging: GPUBuffer[] = [];
  #errors: Promise<GpuError | null>[] = [];
  #stats: RecorderStats = { dispatches: 0, submits: 0, hostWaits: 0 };
  #lastKernel = "";
  // createBindGroup costs ~40 µs on llvmpipe, and a training step binds the
  // same (pooled) buffers and the same param-arena slots every step: bind
  // groups are cached per pipeline by the identity of what they bind.
  #bindGroups = new WeakMap<GPUComputePipeline, Map<string, GPUBindGroup>>();
  #ids = new WeakMap<object, number>();
  #nextId = 1;
  // Profiling with timestamp queries: one pass per dispatch while enabled.
  #profiling = false;
  #querySet: GPUQuerySet | null = null;
  #queryNames: string[] = [];
  #profileBatches: ProfileBatch[] = [];
  /**
   * While profiling, prefixed to the name of every kernel recorded (e.g.
   * "ffn/"), so that a caller can group the kernels of one part of a step;
   * null: names as they are.
   */
  profileTag: string | null = null;

  /** A recorder on `gpu`'s device, taking pipelines from `pipelines`. */
  constructor(gpu: GpuDevice, pipelines: PipelineCache) {
    this.#gpu = gpu;
    this.#device = gpu.device;
    this.#pipelines = pipelines;
    this.#arenaAlign = Math.max(gpu.device.limits.minUniformBufferOffsetAlignment, 16);
  }

  /** Counters since creation. */
  stats(): RecorderStats {
    return { ...this.#stats };
  }

  /** Dispatches recorded and not yet submitted. */
  get pending(): boolean {
    return this.#encoder !== null;
  }

  #checkLost(what: string): void {
    const lost = this.#gpu.lost;
    if (lost) {
      throw new GpuError(
        `GPU device lost (${lost.reason}: ${lost.message}) while running ${what}`,
      );
    }
  }

  #enc(): GPUCommandEncoder {
    if (!this.#encoder) {
      this.#device.pushErrorScope("out-of-memory");
      this.#device.pushErrorScope("validation");
      this.#encoder = this.#device.createCommandEncoder({ label: "ssd step" });
    }
    return this.#encoder;
  }

  #endPass(): void {
    if (this.#pass) {
      this.#pass.end();
      this.#pass = null;
    }
  }

  #paramSlot(params: Params): GPUBufferBinding {
    const bytes = params.bytes();
    if (bytes.byteLength > MAX_PARAM_BYTES) throw new Error("Params block over 256 bytes");
    if (this.#arenaOffset + bytes.byteLength > ARENA_CHUNK_BYTES) {
      this.#writeArenaChunk();
      this.#arenaChunk++;
      this.#arenaOffset = 0;
    }
    if (this.#arenaChunk >= this.#arena.length) {
      this.#arena.push(this.#device.createBuffer({
        size: ARENA_CHUNK_BYTES,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        label: "params arena",
      }));
    }
    const offset = this.#arenaOffset;
    this.#arenaCpu.set(bytes, offset);
    this.#arenaOffset = Math.ceil((offset + bytes.byteLength) / this.#arenaAlign) *
      this.#arenaAlign;
    return { buffer: this.#arena[this.#arenaChunk], offset, size: bytes.byteLength };
  }

  // A full chunk is written as soon as the next one starts; queue order still
  // puts the write before the submit of the commands that read it.
  #writeArenaChunk(): void {
    if (this.#arenaOffset === 0) return;
    this.#device.queue.writeBuffer(
      this.#arena[this.#arenaChunk],
      0,
      this.#arenaCpu,
      0,
      this.#arenaOffset,
    );
  }

  #id(o: object): number {
    let id = this.#ids.get(o);
    if (id === undefined) this.#ids.set(o, id = this.#nextId++);
    return id;
  }

  #cached(pipeline: GPUComputePipeline, key: string, make: () => GPUBindGroup): GPUBindGroup {
    let cache = this.#bindGroups.get(pipeline);
    if (!cache) this.#bindGroups.set(pipeline, cache = new Map());
    let group = cache.get(key);
    if (!group) {
      if (cache.size >= MAX_CACHED_BIND_GROUPS) cache.clear();
      group = make();
      cache.set(key, group);
    }
    return group;
  }

  #group0(pipeline: GPUComputePipeline, bindings: Binding[], name: string): GPUBindGroup {
    let key = "";
    for (const b of bindings) {
      if (b instanceof GPUBuffer) key += `b${this.#id(b)},`;
      else if (b instanceof GPUTextureView) key += `t${this.#id(b)},`;
      else key += `b${this.#id(b.buffer)}@${b.offset ?? 0}+${b.size ?? "all"},`;
    }
    return this.#cached(pipeline, key, () =>
      this.#device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: bindings.map((b, i) => ({
          binding: i,
          resource: b instanceof GPUBuffer ? { buffer: b } : b,
        })),
        label: name,
      }));
  }

  #group1(pipeline: GPUComputePipeline, slot: GPUBufferBinding, name: string): GPUBindGroup {
    const key = `p${this.#id(slot.buffer)}@${slot.offset}+${slot.size}`;
    return this.#cached(pipeline, key, () =>
      this.#device.createBindGroup({
        layout: pipeline.getBindGroupLayout(1),
        entries: [{ binding: 0, resource: slot }],
        label: name + ".params",
      }));
  }

  /**
   * Records a flat launch: `threads` invocations in `wg`-thread workgroups,
   * spread over grid1d's 2-D grid (kernels open with `flatEntry`).
   */
  dispatchFlat(threads: number, wg: number, args: Omit<DispatchArgs, "workgroups">): void {
    this.dispatch({ ...args, workgroups: flatGrid(threads, wg) });
  }

  /** Records one dispatch. */
  dispatch(args: DispatchArgs): void {
    const name = args.kernel.name;
    this.#checkLost(name);
    const pipeline = this.#pipelines.get(args.kernel, args.constants);
    const group0 = this.#group0(pipeline, args.buffers, name);
    const group1 = args.params ? this.#group1(pipeline, this.#paramSlot(args.params), name) : null;
    let enc = this.#enc();
    let pass = this.#pass;
    if (this.#profiling) {
      this.#endPass();
      if (this.#queryNames.length >= PROFILE_QUERIES) {
        // The query set is full: submit what it timed and start over in a new encoder.
        this.flush();
        enc = this.#enc();
      }
      const q = this.#queryNames.length;
      this.#queryNames.push(this.profileTag === null ? name : this.profileTag + name);
      pass = enc.beginComputePass({
        label: name,
        timestampWrites: {
          querySet: this.#querySet!,
          beginningOfPassWriteIndex: 2 * q,
          endOfPassWriteIndex: 2 * q + 1,
        },
      });
      this.#pass = pass;
    } else if (!pass) {
      pass = this.#pass = enc.beginComputePass({ label: "ssd kernels" });
    }
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group0);
    if (group1) pass.setBindGroup(1, group1);
    const [x, y = 1, z = 1] = args.workgroups;
    pass.dispatchWorkgroups(x, y, z);
    if (this.#profiling) this.#endPass();
    this.#lastKernel = name;
    this.#stats.dispatches++;
  }

  /** Records a copy of `data` into `dst` at `dstOffset`, ordered with recorded work. */
  upload(dst: GPUBuffer, data: ArrayBufferView, dstOffset = 0): void {
    this.#checkLost("upload");
    const size = Math.ceil(data.byteLength / 4) * 4;
    if (size === 0) return;
    const staging = this.#device.createBuffer({
      size,
      usage: GPUBufferUsage.COPY_SRC,
      mappedAtCreation: true,
      label: "upload staging",
    });
    new Uint8Array(staging.getMappedRange()).set(
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    );
    staging.unmap();
    this.#endPass();
    this.#enc().copyBufferToBuffer(staging, 0, dst, dstOffset, size);
    this.#staging.push(staging);
  }

  /** Records a buffer-to-buffer copy. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.#checkLost("copy");
    this.#endPass();
    this.#enc().copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  /**
   * Records a copy of `height` rows of `bytesPerRow` bytes (a multiple of
   * 256) from `src` into the top-left `width` × `height` texels of `dst`.
   */
  copyToTexture(
    src: GPUBuffer,
    bytesPerRow: number,
    dst: GPUTexture,
    width: number,
    height: number,
  ): void {
    this.#checkLost("copyToTexture");
    this.#endPass();
    this.#enc().copyBufferToTexture({ buffer: src, bytesPerRow }, { texture: dst }, [
      width,
      height,
    ]);
  }

  /** Submits everything recorded so far; does not wait. */
  flush(): void {
    if (!this.#encoder) return;
    this.#endPass();
    const enc = this.#encoder;
    if (this.#profiling && this.#queryNames.length > 0) {
      const n = this.#queryNames.length * 2;
      const resolve = this.#device.createBuffer({
        size: n * 8,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      });
      const readback = this.#device.createBuffer({
        size: n * 8,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      enc.resolveQuerySet(this.#querySet!, 0, n, resolve, 0);
      enc.copyBufferToBuffer(resolve, 0, readback, 0, n * 8);
      this.#staging.push(resolve);
      this.#profileBatches.push({ names: this.#queryNames, readback });
      this.#queryNames = [];
    }
    this.#writeArenaChunk();
    this.#arenaChunk = 0;
    this.#arenaOffset = 0;
    const t0 = DEBUG_LEVEL >= 1 ? performance.now() : 0;
    this.#device.queue.submit([enc.finish()]);
    this.#encoder = null;
    this.#stats.submits++;
    const device = this.#device;
    const last = this.#lastKernel;
    const scoped = Promise.all([device.popErrorScope(), device.popErrorScope()]).then(
      ([validation, oom]) => {
        const err = validation ?? oom;
        if (!err) return null;
        const kind = oom && !validation ? "out of GPU memory" : "validation error";
        return new GpuError(`GPU ${kind} in a batch ending with ${last}: ${err.message}`);
      },
    );
    this.#errors.push(scoped);
    for (const s of this.#staging) s.destroy();
    this.#staging = [];
    if (DEBUG_LEVEL >= 1) {
      console.error(`[ssd] submit ${(performance.now() - t0).toFixed(2)} ms`);
    }
  }

  async #checkErrors(): Promise<void> {
    await this.#pipelines.check();
    if (this.#errors.length === 0) return;
    const errs = this.#errors;
    this.#errors = [];
    for (const e of await Promise.all(errs)) if (e) throw e;
    this.#checkLost(this.#lastKernel);
  }

  /**
   * Reads byte ranges of several buffers with one host wait.
   * Everything recorded before is submitted first.
   */
  async readMany(
    ranges: { buffer: GPUBuffer; offset?: number; size: number }[],
  ): Promise<ArrayBuffer[]> {
    this.#checkLost("read");
    const enc = this.#enc();
    this.#endPass();
    const staged = ranges.map((r) => {
      const size = Math.ceil(r.size / 4) * 4;
      const buf = this.#device.createBuffer({
        size: Math.max(size, 4),
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
        label: "readback",
      });
      if (size > 0) enc.copyBufferToBuffer(r.buffer, r.offset ?? 0, buf, 0, size);
      return buf;
    });
    this.flush();
    this.#stats.hostWaits++;
    try {
      await Promise.all(staged.map((b) => b.mapAsync(GPUMapMode.READ)));
    } catch (e) {
      await this.#checkErrors();
      throw new GpuError(`Cannot read back from the GPU: ${(e as Error).message}`);
    }
    await this.#checkErrors();
    return staged.map((b, i) => {
      const out = b.getMappedRange(0, Math.ceil(ranges[i].size / 4) * 4 || 4).slice(
        0,
        ranges[i].size,
      );
      b.unmap();
      b.destroy();
      return out;
    });
  }

  /** Reads one byte range back (one host wait). */
  async read(buffer: GPUBuffer, offset: number, size: number): Promise<ArrayBuffer> {
    return (await this.readMany([{ buffer, offset, size }]))[0];
  }

  /** Submits and waits until the GPU is idle (one host wait). */
  async sync(): Promise<void> {
    this.flush();
    this.#stats.hostWaits++;
    await this.#device.queue.onSubmittedWorkDone();
    await this.#checkErrors();
  }

  /**
   * Turns per-dispatch GPU timing on or off. While on, each dispatch runs in
   * its own pass with timestamp writes; returns false when the adapter has
   * no timestamp queries (callers then time on the CPU).
   */
  setProfiling(on: boolean): boolean {
    if (on && !this.#gpu.hasTimestamps) return false;
    this.flush();
    this.#profiling = on;
    if (on && !this.#querySet) {
      this.#querySet = this.#device.createQuerySet({
        type: "timestamp",
        count: PROFILE_QUERIES * 2,
      });
    }
    return true;
  }

  /**
   * Drops unsubmitted work and destroys the recorder's own buffers (parameter
   * arena, staging, timestamp readbacks): the runtime's shutdown.
   */
  destroy(): void {
    this.#pass = null;
    this.#encoder = null;
    for (const b of [...this.#arena, ...this.#staging]) b.destroy();
    for (const b of this.#profileBatches) b.readback.destroy();
    this.#querySet?.destroy();
    this.#arena = [];
    this.#staging = [];
    this.#profileBatches = [];
    this.#querySet = null;
  }

  /** Collects GPU time per kernel of every profiled batch since the last call. */
  async takeProfile(): Promise<KernelTimes> {
    this.flush();
    const batches = this.#profileBatches;
    this.#profileBatches = [];
    const times: KernelTimes = new Map();
    if (batches.length === 0) return times;
    this.#stats.hostWaits++;
    await Promise.all(batches.map((b) => b.readback.mapAsync(GPUMapMode.READ)));
    for (const b of batches) {
      const ts = new BigInt64Array(b.readback.getMappedRange());
      b.names.forEach((name, i) => {
        const ms = Number(ts[2 * i + 1] - ts[2 * i]) / 1e6;
        const t = times.get(name) ?? { ms: 0, count: 0 };
        t.ms += Math.max(ms, 0);
        t.count++;
        times.set(name, t);
      });
      b.readback.unmap();
      b.readback.destroy();
    }
    return times;
  }
}
