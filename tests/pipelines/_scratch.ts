/**
 * A scratch folder per test file, removed when the test process ends, and
 * the tiny checkpoint most pipeline and CLI tests start from.
 */
import { join } from "node:path";
import { type TinyOptions, writeTinyCheckpoint } from "./_tiny_checkpoint.ts";

/** A new temporary folder (named `prefix...`), removed at unload. */
export async function scratchDir(prefix: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix });
  globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
  return dir;
}

/** A scratch folder holding `tiny.safetensors`, written with `opts`. */
export async function scratchTiny(
  prefix: string,
  opts: TinyOptions = {},
): Promise<{ dir: string; ckpt: string }> {
  const dir = await scratchDir(prefix);
  const ckpt = join(dir, "tiny.safetensors");
  await writeTinyCheckpoint(ckpt, opts);
  return { dir, ckpt };
}
