/**
 * `deno task compile`: builds the single `ssd` binary (`deno compile` of
 * cli/main.ts) with everything it needs inside: the WGSL kernels are
 * strings in the modules, and the embedded Brown corpus is an npm package in
 * the module graph, which `deno compile` packs into the binary's virtual file
 * system, so the binary runs from any folder with no checkout and no network.
 *
 *   deno task compile [-o PATH]         (default: ./ssd)
 *
 * `deno compile` downloads its runtime (denort) from dl.deno.land. Where that
 * host is unreachable, this says so in one line and exits 1; with
 * `DENORT_BIN=/path/to/denort` set, `deno compile` uses that runtime instead
 * (it must be the denort of the same Deno version). The result is checked by
 * running `ssd --version`: a base binary that is not a denort (a full `deno`,
 * say) gives a file that ignores the packed program, which is reported and
 * removed rather than left behind.
 */
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import denoJson from "../deno.json" with { type: "json" };

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const decoder = new TextDecoder();

function fail(line: string): never {
  console.error(`compile: ${line}`);
  Deno.exit(1);
}

/**
 * The output path from `-o PATH` / `--output PATH`, else ./ssd, relative to
 * the folder the task was started from (`deno task` runs in the repository
 * root and keeps the caller's folder in INIT_CWD).
 */
function outputPath(args: string[]): string {
  const cwd = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const i = args.findIndex((a) => a === "-o" || a === "--output");
  if (i === -1) return resolve(cwd, "ssd");
  if (!args[i + 1]) fail("-o needs a path");
  return resolve(cwd, args[i + 1]);
}

async function main(): Promise<void> {
  const out = outputPath(Deno.args);
  const denort = Deno.env.get("DENORT_BIN");
  if (denort !== undefined) {
    try {
      if (!(await Deno.stat(denort)).isFile) fail(`DENORT_BIN=${denort} is not a file`);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) fail(`DENORT_BIN=${denort} does not exist`);
      throw e;
    }
  }
  // Build next to the target and rename at the end: no half-written binary.
  const tmp = join(dirname(out), `.${Date.now()}.ssd.tmp`);
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["compile", "-A", "--quiet", "-o", tmp, join(ROOT, "cli/main.ts")],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!r.success) {
    await Deno.remove(tmp).catch(() => {});
    const err = decoder.decode(r.stderr);
    if (
      /dns error|failed to lookup|error sending request|Connection refused|dl\.deno\.land/i.test(
        err,
      )
    ) {
      fail(
        `deno compile could not download its runtime (denort ${Deno.version.deno}) from ` +
          `dl.deno.land (no network): fetch denort-x86_64-unknown-linux-gnu.zip for Deno ` +
          `${Deno.version.deno} elsewhere and rerun with DENORT_BIN=/path/to/denort`,
      );
    }
    const first = err.split("\n").find((l) => l.trim() !== "") ?? `exit ${r.code}`;
    // Deno colours its errors even into a pipe; the ANSI codes are not part of the message.
    const ansi = new RegExp(String.fromCharCode(27) + "\\[[0-9;]*m", "g");
    fail(`deno compile failed: ${first.replace(ansi, "").trim()}`);
  }
  // The built binary must be ssd, not a bare runtime that ignores its payload.
  const v = await new Deno.Command(tmp, { args: ["--version"], stdout: "piped", stderr: "piped" })
    .output();
  const printed = decoder.decode(v.stdout).trim();
  if (!v.success || printed !== denoJson.version) {
    await Deno.remove(tmp).catch(() => {});
    fail(
      `the built binary printed "${printed.split("\n")[0]}" for --version, not ssd's ` +
        `${denoJson.version}: DENORT_BIN must be the denort runtime of Deno ${Deno.version.deno}, ` +
        `not a full deno binary`,
    );
  }
  await Deno.rename(tmp, out);
  const size = (await Deno.stat(out)).size / 2 ** 20;
  console.log(`compile: wrote ${out} (${size.toFixed(0)} MiB): try \`${out} train --preset tiny\``);
}

if (import.meta.main) await main();
