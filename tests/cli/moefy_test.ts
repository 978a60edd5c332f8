/**
 * `ssd moefy` and the MoE flags of `eval` / `generate` as subprocesses:
 * a tiny checkpoint MoE-fied end to end, and bad input (one line, non-zero
 * exit, no output file).
 */
import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { readHeader } from "../../core/checkpoint.ts";
import { writeTinyCheckpoint } from "../pipelines/_tiny_checkpoint.ts";
import { assertOneErrorLine, ssd } from "./_ssd.ts";

const dir = await Deno.makeTempDir();
const dense = join(dir, "dense.safetensors");
await writeTinyCheckpoint(dense, { optimizer: true });
const text = join(dir, "text.txt");
await Deno.writeTextFile(text, "the cat sat on the mat and the dog sat on the log. ".repeat(40));
const moe = join(dir, "moe.safetensors");

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

Deno.test("ssd moefy writes an MoE checkpoint that eval and generate run at any k", async () => {
  const r = await ssd([
    "moefy",
    dense,
    "--experts",
    "4",
    "--top-k",
    "2",
    "-o",
    moe,
    "--data",
    text,
    "--tokens",
    "256",
    "--eval-tokens",
    "512",
    "--json",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.equal(report.layers.length, 1);
  assert.deepEqual(report.moe.map((m: { k: number }) => m.k), [1, 2]);
  const header = await readHeader(moe);
  assert.deepEqual(header.tensors.get("transformer.h.0.mlp.router.weight")!.shape, [4, 16]);
  assert.equal(JSON.parse(header.metadata["ssd.moe"]).top_k, 2);

  const denseEval = JSON.parse((await ssd(["eval", dense, "--data", text, "--json"])).stdout);
  const all = JSON.parse(
    (await ssd(["eval", moe, "--data", text, "--json", "--top-k", "4"])).stdout,
  );
  assert.equal(all.top_k, 4);
  assert.ok(
    Math.abs(all.nll - denseEval.nll) <= 1e-5 * denseEval.nll,
    `${all.nll} vs ${denseEval.nll}`,
  );
  const byDefault = JSON.parse((await ssd(["eval", moe, "--data", text, "--json"])).stdout);
  assert.equal(byDefault.top_k, 2);
  const asDense = JSON.parse(
    (await ssd(["eval", moe, "--data", text, "--json", "--dense"])).stdout,
  );
  assert.equal(asDense.top_k, null);

  const g = await ssd([
    "generate",
    moe,
    "--prompt",
    "the",
    "--tokens",
    "5",
    "--top-k",
    "1",
    "--no-echo",
  ]);
  assert.equal(g.code, 0, g.stderr);
  assert.equal(new TextEncoder().encode(g.stdout).length >= 1, true);
});

const BAD: [string, string[], number, RegExp][] = [
  ["--experts not dividing d_ff", ["--experts", "5"], 1, /--experts 5 does not divide d_ff 32/],
  ["--top-k 0", ["--experts", "4", "--top-k", "0"], 1, /--top-k must be in 1..4/],
  ["--top-k above E", ["--experts", "4", "--top-k", "5"], 1, /--top-k must be in 1..4/],
  ["a missing --experts", [], 2, /required option '--experts <E>'/],
];

for (const [what, args, code, message] of BAD) {
  Deno.test(`ssd moefy rejects ${what} with one line and writes nothing`, async () => {
    const out = join(dir, "bad.safetensors");
    const r = await ssd(["moefy", dense, "-o", out, "--data", text, ...args]);
    assert.match(assertOneErrorLine(r, code), message);
    assert.equal(await exists(out), false);
  });
}

Deno.test("ssd moefy refuses an MoE checkpoint, and eval --top-k a dense one", async () => {
  if (!(await exists(moe))) {
    await ssd(["moefy", dense, "--experts", "4", "-o", moe, "--data", text, "--tokens", "64"]);
  }
  const out = join(dir, "again.safetensors");
  const again = await ssd(["moefy", moe, "--experts", "4", "-o", out, "--data", text]);
  assert.match(assertOneErrorLine(again, 1), /already an MoE checkpoint/);
  assert.equal(await exists(out), false);
  const e = await ssd(["eval", dense, "--data", text, "--top-k", "2"]);
  assert.match(assertOneErrorLine(e, 1), /--top-k needs an MoE checkpoint/);
  const k = await ssd(["eval", moe, "--data", text, "--top-k", "9"]);
  assert.match(assertOneErrorLine(k, 1), /--top-k must be in 1..4/);
});

Deno.test("ssd moefy refuses -o naming the source checkpoint, however it is spelled", async () => {
  const before = await Deno.readFile(dense);
  const link = join(dir, "dense_link.safetensors");
  await Deno.symlink(dense, link);
  const name = "dense.safetensors";
  const spellings = [dense, `${dir}/./${name}`, `${dir}/../${basename(dir)}/${name}`, link];
  for (const out of spellings) {
    const r = await ssd(["moefy", dense, "--experts", "4", "-o", out, "--data", text]);
    assert.match(assertOneErrorLine(r, 1), /is the source checkpoint/, out);
  }
  assert.deepEqual(await Deno.readFile(dense), before, "the dense source is untouched");
  await Deno.remove(link);
});
