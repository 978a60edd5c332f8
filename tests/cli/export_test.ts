/**
 * `ssd export` as a real subprocess: `--json` (the files written, format,
 * parameter count) and the human-readable lines, refusal of an existing
 * folder without `--force` and its replacement with it, and bad input (a
 * bad format, a missing or corrupt checkpoint, no `-o`): one line, a
 * non-zero exit, no output, no folder.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readCheckpoint } from "../../core/checkpoint.ts";
import { paramCount } from "../../core/nn/config.ts";
import { writeMismatched } from "../pipelines/_mismatched_checkpoint.ts";
import { listDir, TINY_CONFIG, writeTinyCheckpoint } from "../pipelines/_tiny_checkpoint.ts";
import { assertOneErrorLine, ssd } from "./_ssd.ts";

const dir = await Deno.makeTempDir({ prefix: "ssd_cli_export_" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
const ckpt = join(dir, "tiny.safetensors");
await writeTinyCheckpoint(ckpt, { optimizer: true });

Deno.test("ssd export --json: the files written, the format and the parameter count", async () => {
  const out = join(dir, "hf");
  const r = await ssd(["export", ckpt, "-o", out, "--format", "hf", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  const doc = JSON.parse(r.stdout);
  assert.equal(doc.format, "hf");
  assert.equal(doc.out, out);
  assert.equal(doc.checkpoint, ckpt);
  assert.equal(doc.parameters, paramCount(TINY_CONFIG));
  assert.deepEqual(doc.config, { ...TINY_CONFIG });
  assert.equal(doc.moe, null);
  assert.deepEqual(
    doc.files.map((f: { path: string }) => f.path),
    [join(out, "config.json"), join(out, "model.safetensors")],
  );
  for (const f of doc.files) assert.equal(f.bytes, (await Deno.stat(f.path)).size, f.path);
  const { tensors } = await readCheckpoint(join(out, "model.safetensors"));
  assert.deepEqual(tensors.get("transformer.h.0.attn.c_attn.weight")!.shape, [16, 48]);

  const ng = join(dir, "ng");
  const text = await ssd(["export", ckpt, "-o", ng, "--format", "nanogpt"]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(
    text.stdout,
    new RegExp(`^exported .* -> ${ng} \\(nanoGPT, 6480 parameters\\)$`, "m"),
  );
  assert.match(text.stdout, /model\.safetensors +\d+ bytes$/m);
  assert.deepEqual(await listDir(ng), ["config.json", "model.safetensors"]);
});

Deno.test("ssd export refuses an existing folder without --force and replaces it with it", async () => {
  const out = join(dir, "taken");
  await Deno.mkdir(out);
  await Deno.writeTextFile(join(out, "notes.txt"), "keep me");
  const r = await ssd(["export", ckpt, "-o", out]);
  const line = assertOneErrorLine(r, 1);
  assert.match(line, /taken already exists: --force to replace it/);
  assert.equal(r.stdout, "");
  assert.deepEqual(await listDir(out), ["notes.txt"]);

  const f = await ssd(["export", ckpt, "-o", out, "--force", "--json"]);
  assert.equal(f.code, 0, f.stderr);
  assert.equal(JSON.parse(f.stdout).format, "hf", "hf is the default format");
  assert.deepEqual(await listDir(out), ["config.json", "model.safetensors"]);
  assert.ok(!(await listDir(dir)).some((n) => n.startsWith(".taken.")), "no temporary left");
});

Deno.test("ssd export: bad input exits non-zero with one line, no output and no folder", async () => {
  const bad = join(dir, "mismatch.safetensors");
  await writeMismatched(ckpt, bad);
  const out = join(dir, "never");
  const before = await listDir(dir);
  const cases: [string[], number, RegExp][] = [
    [[ckpt, "-o", out, "--format", "onnx"], 2, /argument 'onnx' is invalid.*hf, nanogpt/],
    [[join(dir, "missing.safetensors"), "-o", out], 1, /Checkpoint file not found/],
    [[bad, "-o", out], 1, /does not match the model config/],
    [[ckpt], 2, /required option '-o, --output <dir>' not specified/],
    [[ckpt, "-o", ckpt, "--force"], 1, /is an existing file/],
  ];
  for (const [args, code, re] of cases) {
    const r = await ssd(["export", ...args]);
    const line = assertOneErrorLine(r, code);
    assert.match(line, re, args.join(" "));
    assert.equal(r.stdout, "", `nothing on stdout: ${args.join(" ")}`);
  }
  assert.deepEqual(await listDir(dir), before, "no folder or temporary created");
});
