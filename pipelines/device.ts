/**
 * `ssd device`: what WebGPU adapter this machine offers, and the Deno that
 * runs us.
 *
 * It opens a real device rather than only asking for an adapter, because an
 * adapter that cannot open a device (driver too old, limits refused) is as
 * useless to every other command as no adapter at all; the limits shown are
 * therefore the ones every other command gets (the adapter's maxima for the
 * limits we raise, WebGPU defaults for the rest). The device is destroyed
 * before returning, so the process-wide runtime of `gpu/runtime.ts` is left
 * alone.
 */
import { acquireDevice, type GpuDevice } from "../gpu/device.ts";

/** Facts about the adapter and the runtime, as `ssd device --json` prints them. */
export interface DeviceReport {
  /** Adapter name (e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"). */
  name: string;
  /** Vendor as the adapter reports it (may be empty). */
  vendor: string;
  /** Architecture as the adapter reports it (often empty on software adapters). */
  architecture: string;
  /** Graphics API under WebGPU (Vulkan, Metal, D3D12). */
  backend: string;
  /** True for a software or fallback adapter such as llvmpipe. */
  fallback: boolean;
  /** Limits of the device every command opens, by WebGPU name. */
  limits: Record<string, number>;
  /** Features enabled on that device, sorted. */
  features: string[];
  /** Versions of the runtime. */
  deno: { version: string; v8: string; typescript: string };
}

/** Options of `runDevice`. */
export interface DeviceOptions {
  /** Opens the device; defaults to `acquireDevice` (tests inject a failing one). */
  acquire?: () => Promise<GpuDevice>;
}

/**
 * Opens the adapter's device, summarises it and closes it again.
 *
 * @returns the adapter facts plus the Deno version
 * @throws GpuError with `NO_ADAPTER_HINT` when there is no adapter
 */
export async function runDevice(opts: DeviceOptions = {}): Promise<DeviceReport> {
  const dev = await (opts.acquire ?? acquireDevice)();
  try {
    const s = dev.summary;
    return {
      name: s.name,
      vendor: s.vendor,
      architecture: s.architecture,
      backend: s.backend,
      fallback: s.isFallback,
      limits: { ...s.limits },
      features: [...s.features],
      deno: {
        version: Deno.version.deno,
        v8: Deno.version.v8,
        typescript: Deno.version.typescript,
      },
    };
  } finally {
    dev.device.destroy();
  }
}
