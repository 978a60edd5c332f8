/**
 * The process-wide GPU runtime: one device, its buffer pool, pipeline cache
 * and command recorder. Everything above `gpu/` reaches the GPU through it.
 */
import { acquireDevice, type GpuDevice } from "./device.ts";
import { GpuError } from "./errors.ts";
import { PipelineCache } from "./pipeline_cache.ts";
import { BufferPool } from "./pool.ts";
import { Recorder } from "./recorder.ts";

/** Device, pool, pipelines and recorder of this process. */
export interface Gpu {
  /** The device and its adapter summary. */
  readonly dev: GpuDevice;
  /** The raw WebGPU device. */
  readonly device: GPUDevice;
  /** Storage buffers by size class. */
  readonly pool: BufferPool;
  /** Compiled pipelines. */
  readonly pipelines: PipelineCache;
  /** Records and submits work. */
  readonly recorder: Recorder;
}

let current: Gpu | null = null;
let opening: Promise<Gpu> | null = null;
// Resources other modules keep per device (scratch textures), destroyed by
// `closeGpu()` before the device itself.
const closers: ((g: Gpu) => void)[] = [];

/** Registers `fn` to free what a module keeps on the device, at `closeGpu()`. */
export function atCloseGpu(fn: (g: Gpu) => void): void {
  closers.push(fn);
}

/**
 * Shuts the runtime down in order: every resource the process made on the
 * device (pooled buffers, the recorder's arena and staging, scratch
 * textures), then the device. Idempotent; runs by itself when the process
 * unloads: at the end of a script or a test run, and on `Deno.exit()`, which
 * dispatches `unload` too.
 */
export function closeGpu(): void {
  const g = current;
  if (!g) return;
  current = null;
  opening = null;
  try {
    g.recorder.destroy();
    for (const fn of closers) fn(g);
    g.pool.destroyAll();
  } finally {
    g.device.destroy();
  }
}

/** Opens the GPU once per process; later calls return the same runtime. */
export function initGpu(): Promise<Gpu> {
  if (current) return Promise.resolve(current);
  opening ??= acquireDevice().then((dev) => {
    const pipelines = new PipelineCache(dev.device);
    current = {
      dev,
      device: dev.device,
      pool: new BufferPool(dev.device),
      pipelines,
      recorder: new Recorder(dev, pipelines),
    };
    globalThis.addEventListener("unload", closeGpu);
    return current;
  }).catch((e) => {
    opening = null;
    throw e;
  });
  return opening;
}

/** The open runtime; throws if `initGpu()` has not completed. */
export function gpu(): Gpu {
  if (!current) throw new GpuError("GPU not initialised: await initGpu() first");
  return current;
}
