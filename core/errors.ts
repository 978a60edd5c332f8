/**
 * Error classes of the toolchain. `SsdError` and `GpuError` come from `gpu/`
 * (the bottom layer); the rest are defined here.
 */
import { SsdError } from "../gpu/errors.ts";

export { GpuError, NO_ADAPTER_HINT, SsdError } from "../gpu/errors.ts";
// Whether errors should carry their stack traces (`SSD_DEBUG`): the CLI asks here.
export { DEBUG_STACKS } from "../gpu/debug.ts";

/** Tensor shapes (or index ranges) do not fit the op. */
export class ShapeError extends SsdError {
  /** An error with this one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "ShapeError";
  }
}

/** A tensor was used after `release()`, or an op was misused. */
export class TensorError extends SsdError {
  /** An error with this one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "TensorError";
  }
}

/** A config key is unknown, or a value has the wrong type or range. */
export class ConfigError extends SsdError {
  /** An error with this one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** A checkpoint file is missing, corrupt, or does not match the config. */
export class CheckpointError extends SsdError {
  /** An error with this one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "CheckpointError";
  }
}

/** Formats a shape as `[2, 3, 4]` for error messages. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}
