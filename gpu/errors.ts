/**
 * Error classes shared by every layer. They live in `gpu/` because it is the
 * bottom of the import graph; `core/errors.ts` re-exports them with the rest.
 *
 * Messages are in sentence case with no final period, and say what was wrong
 * and, where there is one, what to do.
 */

/** Base class of every error the toolchain raises on purpose (not a bug). */
export class SsdError extends Error {
  /** An error with this one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "SsdError";
  }
}

/** WebGPU failed: no adapter, device lost, shader or validation error, out of memory. */
export class GpuError extends SsdError {
  /** An error with this one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "GpuError";
  }
}

/** The one line printed when there is no WebGPU adapter at all. */
export const NO_ADAPTER_HINT: string =
  "No WebGPU adapter found: install a GPU driver, or Mesa's software Vulkan driver " +
  "(Debian 12: apt-get install -t bookworm-backports mesa-vulkan-drivers)";
