/**
 * Atomic file writes for the toolchain's outputs (reports, bench JSON,
 * profile arrays): the bytes go to a temporary file in the target's folder
 * (same file system, so the rename is atomic), which is then renamed over
 * the target. A failed or interrupted write leaves the old file, or none,
 * never half a file; the temporary is removed on failure. Checkpoints have
 * their own writer with fsync (core/checkpoint.ts).
 */
import { basename, dirname, join } from "node:path";

/** Writes `data` (bytes or UTF-8 text) to `path` through a temporary file and a rename. */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${Deno.pid}`);
  try {
    if (typeof data === "string") await Deno.writeTextFile(tmp, data);
    else await Deno.writeFile(tmp, data);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}
