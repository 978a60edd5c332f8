/**
 * `SSD_DEBUG`, read once, here: 0 = quiet, 1 = per-flush timings on stderr,
 * 2 = also print the WGSL source of every kernel compiled. Any value but
 * empty or "0" also makes the CLI print stack traces.
 */

function readRaw(): string | undefined {
  try {
    return Deno.env.get("SSD_DEBUG");
  } catch {
    // No --allow-env: debugging stays off.
    return undefined;
  }
}

const RAW = readRaw();
const LEVEL = RAW === undefined ? 0 : Number(RAW);

/** Debug level from the `SSD_DEBUG` environment variable. */
export const DEBUG_LEVEL: number = Number.isFinite(LEVEL) ? LEVEL : 0;
/** Whether `SSD_DEBUG` is set to anything but empty or "0": the CLI adds stack traces. */
export const DEBUG_STACKS: boolean = RAW !== undefined && RAW !== "" && RAW !== "0";
