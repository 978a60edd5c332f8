/**
 * Pipeline cache keyed by kernel name and specialisation constants.
 *
 * Creation is synchronous so that op code can record dispatches without
 * awaiting; compilation and validation errors are caught in an error scope
 * and surfaced at the next flush, with the kernel name and each error's
 * line:col and source line from the module's compilation info.
 */
import { compileErrorMessage } from "./compile_error.ts";
import { DEBUG_LEVEL } from "./debug.ts";
import { GpuError } from "./errors.ts";
import { type Constants, type Kernel, pipelineKey } from "./kernel.ts";

/** Compiled pipelines and the errors their creation raised. */
export class PipelineCache {
  #device: GPUDevice;
  #modules = new Map<string, GPUShaderModule>();
  #pipelines = new Map<string, GPUComputePipeline>();
  #pending: Promise<GpuError | null>[] = [];

  /** An empty cache compiling on `device`. */
  constructor(device: GPUDevice) {
    this.#device = device;
  }

  /** Number of compiled pipelines (for tests and `ssd device`). */
  get size(): number {
    return this.#pipelines.size;
  }

  /** The pipeline for `kernel` specialised by `constants`, compiled on first use. */
  get(kernel: Kernel, constants?: Constants): GPUComputePipeline {
    const key = pipelineKey(kernel, constants);
    const hit = this.#pipelines.get(key);
    if (hit) return hit;

    const device = this.#device;
    if (DEBUG_LEVEL >= 2) console.error(`// ---- ${key}\n${kernel.code}`);
    device.pushErrorScope("validation");
    let module = this.#modules.get(kernel.code);
    if (!module) {
      module = device.createShaderModule({ code: kernel.code, label: kernel.name });
      this.#modules.set(kernel.code, module);
    }
    const pipeline = device.createComputePipeline({
      label: kernel.name,
      layout: "auto",
      compute: { module, entryPoint: "main", constants },
    });
    const shader = module;
    this.#pending.push(
      device.popErrorScope().then(async (err) => {
        if (!err) return null;
        const info = await shader.getCompilationInfo();
        return new GpuError(compileErrorMessage(key, kernel.code, info.messages, err.message));
      }),
    );
    this.#pipelines.set(key, pipeline);
    return pipeline;
  }

  /** Throws the first compilation error seen since the last call, if any. */
  async check(): Promise<void> {
    if (this.#pending.length === 0) return;
    const pending = this.#pending;
    this.#pending = [];
    for (const err of await Promise.all(pending)) if (err) throw err;
  }
}
