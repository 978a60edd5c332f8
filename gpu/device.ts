/**
 * Adapter and device acquisition.
 *
 * We ask for the adapter's own maxima of the limits that bound tensor sizes
 * and kernel shapes (storage-buffer binding size, workgroup size and storage),
 * since WebGPU's defaults are far below what real adapters offer. Device loss
 * is remembered and turned into a `GpuError` by the next call that uses it.
 */
import { GpuError, NO_ADAPTER_HINT } from "./errors.ts";

/** Limits we raise to the adapter's maximum when requesting the device. */
const RAISED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
] as const;

/** Optional features we use when the adapter has them. */
const WANTED_FEATURES: GPUFeatureName[] = ["timestamp-query"];

/** What we know about the adapter, for `ssd device` and autotune keys. */
export interface AdapterSummary {
  /** Human-readable adapter name (e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"). */
  name: string;
  /** Vendor id or name as the adapter reports it. */
  vendor: string;
  /** Architecture string (often empty on software adapters). */
  architecture: string;
  /** Graphics API under WebGPU, guessed from the adapter (Vulkan, Metal, D3D12). */
  backend: string;
  /** True for software / fallback adapters such as llvmpipe. */
  isFallback: boolean;
  /** Limits of the device we requested, by name. */
  limits: Record<string, number>;
  /** Features enabled on the device. */
  features: string[];
}

/** A live device plus the facts about it that kernels and tools need. */
export interface GpuDevice {
  /** The adapter the device came from. */
  adapter: GPUAdapter;
  /** The device. */
  device: GPUDevice;
  /** Summary for printing and cache keys. */
  summary: AdapterSummary;
  /** Whether timestamp queries can be used for profiling. */
  hasTimestamps: boolean;
  /** Set once the device is lost; every later use throws. */
  lost: GPUDeviceLostInfo | null;
}

function guessBackend(): string {
  switch (Deno.build.os) {
    case "darwin":
      return "Metal";
    case "windows":
      return "D3D12";
    default:
      return "Vulkan";
  }
}

/**
 * Mesa's Vulkan loader warns on every start without XDG_RUNTIME_DIR (CI
 * containers, cron); compute needs no display, so any writable folder does.
 * Set here, before the first adapter request, because `deno task`'s shell
 * has no `${VAR:-default}` to do it in deno.json.
 */
function ensureRuntimeDir(): void {
  try {
    if (!Deno.env.get("XDG_RUNTIME_DIR")) Deno.env.set("XDG_RUNTIME_DIR", "/tmp");
  } catch {
    // Without --allow-env the warning stays: harmless.
  }
}

/**
 * Deno's wgpu opens every backend it was built with; on Linux that is Vulkan
 * and GL (through glvnd's libEGL). We only ever use Vulkan, but EGL's
 * per-thread state, once created, is freed twice at process exit (by the
 * instance's teardown and again by libGLdispatch's thread-exit destructor):
 * glibc then aborts with "double free or corruption" or "corrupted size vs.
 * prev_size" in a few percent of processes, after all their work is done.
 * Asking for Vulkan alone keeps libEGL out of the process. The variable is
 * read once, when `navigator.gpu` is first used, so it is set before the
 * first adapter request; a value the user set is respected.
 * `tests/stress/exit_repro.ts` reproduces the abort without it.
 */
export function chooseBackend(): void {
  if (Deno.build.os !== "linux") return;
  try {
    if (!Deno.env.get("DENO_WEBGPU_BACKEND")) Deno.env.set("DENO_WEBGPU_BACKEND", "vulkan");
  } catch {
    // Without --allow-env we cannot choose; the default backends still work.
  }
}

/** Returns the adapter or null; never throws for "no adapter". */
export async function requestAdapter(): Promise<GPUAdapter | null> {
  if (typeof navigator === "undefined" || !("gpu" in navigator)) return null;
  ensureRuntimeDir();
  chooseBackend();
  try {
    return await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch {
    return null;
  }
}

/**
 * Opens a device with raised limits. Throws `GpuError` with the install hint
 * when no adapter exists.
 */
export async function acquireDevice(): Promise<GpuDevice> {
  const adapter = await requestAdapter();
  if (!adapter) throw new GpuError(NO_ADAPTER_HINT);

  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof v === "number") requiredLimits[name] = v;
  }
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f));
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  } catch (e) {
    throw new GpuError(`Cannot open a WebGPU device: ${(e as Error).message}`);
  }

  const limits: Record<string, number> = {};
  for (const key in device.limits) {
    const v = (device.limits as unknown as Record<string, number>)[key];
    if (typeof v === "number") limits[key] = v;
  }
  const info = adapter.info;
  const gpu: GpuDevice = {
    adapter,
    device,
    summary: {
      name: info.description || info.device || "unknown adapter",
      vendor: info.vendor,
      architecture: info.architecture,
      backend: guessBackend(),
      isFallback: (info as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter ??
        false,
      limits,
      features: [...device.features].sort(),
    },
    hasTimestamps: device.features.has("timestamp-query"),
    lost: null,
  };
  device.lost.then((lostInfo) => {
    gpu.lost = lostInfo;
  });
  return gpu;
}
