/**
 * `ssd train` as a subprocess: a tiny run end to end and bad input (one
 * line, non-zero exit, no output folder); signals are in train_signal_test.ts.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readHeader } from "../../core/checkpoint.ts";
import { assertOneErrorLine, ROOT, ssd } from "./_ssd.ts";

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("ssd train --preset tiny writes metrics, checkpoints and a JSON summary", async () => {
  const dir = await Deno.makeTempDir();
  const data = join(dir, "data.txt");
  await Deno.writeTextFile(data, (await Deno.readTextFile(join(ROOT, "README.md"))).repeat(3));
  const out = join(dir, "run");
  const r = await ssd([
    "train",
    "--preset",
    "tiny",
    "--steps",
    "20",
    "--save-every",
    "10",
    "--eval-every",
    "10",
    "--data",
    data,
    "--out",
    out,
    "--json",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout);
  assert.equal(summary.step, 20);
  assert.equal(summary.config.preset, "tiny");
  assert.ok(summary.val.nll > 0 && Number.isFinite(summary.val.bpb));
  assert.ok(await exists(join(out, "ckpt-10.safetensors")));
  assert.ok(await exists(join(out, "final.safetensors")));
  const lines = (await Deno.readTextFile(join(out, "metrics.jsonl"))).trim().split("\n");
  assert.equal(lines.filter((l) => "loss" in JSON.parse(l)).length, 20);
  const header = await readHeader(join(out, "final.safetensors"));
  assert.ok(header.tensors.has("optim.m.transformer.wte.weight"));
  await Deno.remove(dir, { recursive: true });
});

const BAD: [string, string[], RegExp][] = [
  ["--steps -1", ["--steps", "-1"], /--steps must be a positive integer, got -1/],
  ["d_model not divisible by n_head", ["--d-model", "30", "--n-head", "4"], /not divisible/],
  ["an unknown flag", ["--stepz", "3"], /unknown option '--stepz'/],
  ["a non-integer flag value", ["--steps", "ten"], /expected an integer/],
  ["an unknown preset", ["--preset", "huge"], /Unknown preset "huge"/],
  ["a missing data file", ["--data", "/nonexistent/x.txt"], /no such file/],
];

for (const [what, args, message] of BAD) {
  Deno.test(`ssd train rejects ${what} with one line and writes nothing`, async () => {
    const dir = await Deno.makeTempDir();
    const out = join(dir, "run");
    const r = await ssd(["train", "--preset", "tiny", "--out", out, ...args]);
    assert.notEqual(r.code, 0);
    assert.match(assertOneErrorLine(r, r.code), message);
    assert.equal(await exists(out), false, "output folder created");
    await Deno.remove(dir, { recursive: true });
  });
}

Deno.test("ssd train rejects an empty data file with one line and writes nothing", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(join(dir, "empty.txt"), "");
  const out = join(dir, "run");
  const r = await ssd([
    "train",
    "--preset",
    "tiny",
    "--data",
    join(dir, "empty.txt"),
    "--out",
    out,
  ]);
  assert.match(assertOneErrorLine(r, 1), /file is empty/);
  assert.equal(await exists(out), false);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("ssd train --resume of a missing path fails with one line", async () => {
  const r = await ssd(["train", "--resume", "/nonexistent/run"]);
  assert.match(assertOneErrorLine(r, 1), /Cannot resume from \/nonexistent\/run/);
});
