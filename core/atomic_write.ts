/**
 * The one atomic file writer of the toolchain (checkpoints, reports, bench
 * JSON, profile arrays): the bytes go to a temporary file in the target's
 * folder (same file system, so the rename is atomic), which is then renamed
 * over the target. A failed or interrupted write leaves the old file, or
 * none, never half a file; the temporary is removed on failure. With
 * `fsync` the data and then the rename are made durable, so a power cut
 * cannot leave a renamed but empty file (checkpoints ask for it).
 */
import { basename, dirname, join } from "node:path";

/** Options of `writeFileAtomic`. */
export interface AtomicWriteOptions {
  /** Flush the temporary file to disk before the rename, and the folder after it. */
  fsync?: boolean;
  /**
   * Test hook, called once the temporary file is complete (and synced) and before the
   * rename. Throwing here simulates a crash at the worst moment.
   */
  beforeRename?: () => void | Promise<void>;
}

/** A temporary name next to `path`: `.<name>.tmp-<pid>-<12 hex>`. */
function tempName(path: string): string {
  const rand = Array.from(
    crypto.getRandomValues(new Uint8Array(6)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  return join(dirname(path), `.${basename(path)}.tmp-${Deno.pid}-${rand}`);
}

/** True for the name of a temporary file `writeFileAtomic` makes (left only by a killed process). */
export function isAtomicTemp(fileName: string): boolean {
  return /^\..+\.tmp-\d+-[0-9a-f]{12}$/.test(fileName);
}

/**
 * Writes `data` to `path` through a temporary file and a rename.
 *
 * @param path the target; its folder must exist
 * @param data UTF-8 text, bytes, or byte chunks written back to back
 * @param opts `fsync` for durability, `beforeRename` test hook
 * @throws the I/O error as Deno raised it (callers add their own message)
 */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array | readonly Uint8Array[],
  opts: AtomicWriteOptions = {},
): Promise<void> {
  const chunks = typeof data === "string"
    ? [new TextEncoder().encode(data)]
    : data instanceof Uint8Array
    ? [data]
    : data;
  const tmp = tempName(path);
  let file: Deno.FsFile | null = null;
  try {
    file = await Deno.open(tmp, { write: true, createNew: true });
    for (const chunk of chunks) {
      let done = 0;
      while (done < chunk.length) done += await file.write(chunk.subarray(done));
    }
    if (opts.fsync) await file.sync();
    file.close();
    file = null;
    await opts.beforeRename?.();
    await Deno.rename(tmp, path);
  } catch (e) {
    try {
      file?.close();
    } catch { /* already closed */ }
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  if (opts.fsync) await syncDir(dirname(path));
}

/** Makes the rename durable; not every platform can open a folder, so failure is ignored. */
async function syncDir(dir: string): Promise<void> {
  try {
    const d = await Deno.open(dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  } catch { /* best effort */ }
}
