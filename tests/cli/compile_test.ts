/**
 * `deno task compile` (cli/build_binary.ts) as a subprocess: without
 * dl.deno.land it says so in one line and leaves no file; DENORT_BIN is
 * honoured (a missing one is reported; a full deno binary, which is not a
 * denort, is caught by the --version check and its output removed). Where
 * the download works, the built binary must print ssd's version.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import denoJson from "../../deno.json" with { type: "json" };
import { ROOT } from "./_ssd.ts";

async function compile(out: string, env: Record<string, string> = {}) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli/build_binary.ts", "-o", out],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** Files in `dir` (to check that no temporary is left behind). */
async function entries(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names;
}

Deno.test("compile: a DENORT_BIN that does not exist is one line, exit 1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await compile(join(dir, "ssd"), { DENORT_BIN: join(dir, "nope") });
    assert.equal(r.code, 1);
    assert.match(r.stderr.trim(), /^compile: DENORT_BIN=.*nope does not exist$/);
    assert.deepEqual(await entries(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("compile: a full deno binary as DENORT_BIN is caught, nothing left", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await compile(join(dir, "ssd"), { DENORT_BIN: Deno.execPath() });
    assert.equal(r.code, 1, r.stderr);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /not ssd's .*DENORT_BIN must be the denort runtime/);
    assert.deepEqual(await entries(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("compile: no network gives one line naming DENORT_BIN; with it, a working binary", async () => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "ssd");
  try {
    const r = await new Deno.Command("env", {
      args: ["-u", "DENORT_BIN", Deno.execPath(), "run", "-A", "cli/build_binary.ts", "-o", out],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(r.stderr).trim();
    if (r.code === 0) {
      // The download worked: the binary must be ssd, from any folder.
      const v = await new Deno.Command(out, { args: ["--version"], cwd: dir, stdout: "piped" })
        .output();
      assert.equal(new TextDecoder().decode(v.stdout).trim(), denoJson.version);
    } else {
      assert.equal(r.code, 1);
      assert.equal(stderr.split("\n").length, 1, stderr);
      assert.match(stderr, /could not download its runtime .*DENORT_BIN=/);
      assert.equal(await exists(out), false);
      assert.deepEqual(await entries(dir), []);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
