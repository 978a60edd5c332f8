/**
 * `SSD_DEBUG`, read once: 0 = quiet, 1 = per-flush timings on stderr,
 * 2 = also print the WGSL source of every kernel compiled.
 */

function readLevel(): number {
  try {
    const raw = Deno.env.get("SSD_DEBUG");
    const level = raw === undefined ? 0 : Number(raw);
    return Number.isFinite(level) ? level : 0;
  } catch {
    // No --allow-env: debugging stays off.
    return 0;
  }
}

/** Debug level from the `SSD_DEBUG` environment variable. */
export const DEBUG_LEVEL: number = readLevel();
