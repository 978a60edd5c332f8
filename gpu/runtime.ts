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
