/**
 * @module
 * WebGPU layer: device acquisition, buffer pool, pipeline cache, command
 * recorder, and the WGSL kernels grouped by family.
 */
export * from "./errors.ts";
export * from "./device.ts";
export * from "./pool.ts";
export * from "./kernel.ts";
export type { Lane } from "./wgsl.ts";
export * from "./pipeline_cache.ts";
export * from "./recorder.ts";
export * from "./runtime.ts";
export * from "./util.ts";
export { DEBUG_LEVEL } from "./debug.ts";
