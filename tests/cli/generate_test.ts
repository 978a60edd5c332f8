/**
 * `ssd generate` as a real subprocess: seeded determinism, greedy output
 * equal to the in-process pipeline, prompt echo, UTF-8 streaming, and bad
 * input (one line on stderr, nothing on stdout, no file written).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { decode } from "../../core/tokenizer.ts";
import { type GenerateConfig, runGenerate } from "../../pipelines/generate.ts";
import { setupGpu } from "../_helpers.ts";
import { listDir, truncateCopy } from "../pipelines/_tiny_checkpoint.ts";
import { assertOneErrorLine, noAutotune, ssd, ssdHead } from "./_ssd.ts";
import { scratchTiny } from "../pipelines/_scratch.ts";

noAutotune();
await setupGpu();
const { dir, ckpt } = await scratchTiny("ssd_cli_generate_", { seed: 3 });

async function inProcess(c: Omit<GenerateConfig, "checkpoint">): Promise<number[]> {
  const out: number[] = [];
  for await (const t of runGenerate({ checkpoint: ckpt, ...c })) out.push(t);
  return out;
}

Deno.test("ssd generate: the same seed prints the same text, another seed another", async () => {
  const args = ["generate", ckpt, "--prompt", "the cat", "--tokens", "24"];
  const a = await ssd([...args, "--seed", "3"]);
  const b = await ssd([...args, "--seed", "3"]);
  const c = await ssd([...args, "--seed", "4"]);
  for (const r of [a, b, c]) {
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.ok(r.stdout.startsWith("the cat"), "prompt echoed first");
  }
  assert.deepEqual(a.stdoutBytes, b.stdoutBytes);
  assert.notEqual(a.stdout, c.stdout);
  // The defaults (temperature 0.8, top-k 40) are what the pipeline gets.
  const want = await inProcess({
    prompt: "the cat",
    tokens: 24,
    temperature: 0.8,
    sample_top_k: 40,
    seed: 3,
  });
  assert.equal(a.stdout, "the cat" + decode(want));
});

Deno.test("ssd generate --temperature 0 --no-echo prints the greedy continuation only", async () => {
  const r = await ssd([
    "generate",
    ckpt,
    "--prompt",
    "a long prompt, longer than ctx",
    "--tokens",
    "20",
    "--temperature",
    "0",
    "--no-echo",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const want = await inProcess({
    prompt: "a long prompt, longer than ctx",
    tokens: 20,
    temperature: 0,
    sample_top_k: 40,
    seed: 0,
  });
  assert.equal(r.stdout, decode(want));
});

Deno.test("ssd generate streams UTF-8 whole: output = prompt + decode(all tokens)", async () => {
  // Temperature 2 over all 256 bytes: plenty of multi-byte starts and invalid sequences.
  const prompt = "héllo ☃ ";
  const args = ["--tokens", "60", "--temperature", "2", "--sample-top-k", "0", "--seed", "9"];
  const r = await ssd(["generate", ckpt, "--prompt", prompt, ...args]);
  assert.equal(r.code, 0, r.stderr);
  const want = await inProcess({ prompt, tokens: 60, temperature: 2, sample_top_k: 0, seed: 9 });
  assert.ok(want.some((t) => t >= 0x80), "the sample should contain non-ASCII bytes");
  assert.equal(r.stdout, prompt + decode(want));
});

Deno.test("ssd generate: bad input exits non-zero with one line and no output", async () => {
  const cut = join(dir, "cut.safetensors");
  await truncateCopy(ckpt, cut, 3000);
  const before = await listDir(dir);
  const p = ["--prompt", "hi"];
  const cases: [string[], number, RegExp][] = [
    [[ckpt, "--prompt", ""], 1, /--prompt is empty/],
    [[ckpt], 2, /required option '--prompt <text>' not specified/],
    [[ckpt, ...p, "--temperature", "-1"], 2, /--temperature.*>= 0/],
    [[ckpt, ...p, "--temperature", "hot"], 2, /--temperature.*number/],
    [[ckpt, ...p, "--sample-top-k", "-1"], 2, /--sample-top-k.*>= 0/],
    [
      [ckpt, ...p, "--sample-top-k", "300"],
      1,
      /--sample-top-k 300 is larger than the model's vocab of 256/,
    ],
    [[ckpt, ...p, "--tokens", "1.5"], 2, /--tokens.*integer/],
    [[join(dir, "missing.safetensors"), ...p], 1, /Checkpoint file not found/],
    [[cut, ...p], 1, /cut\.safetensors/],
    [[ckpt, ...p, "--bogus"], 2, /unknown option '--bogus'/],
  ];
  for (const [args, code, re] of cases) {
    const r = await ssd(["generate", ...args]);
    const line = assertOneErrorLine(r, code);
    assert.match(line, re, args.join(" "));
    assert.equal(r.stdout, "", `nothing on stdout: ${args.join(" ")}`);
  }
  assert.deepEqual(await listDir(dir), before, "no file created");
});

Deno.test("ssd generate ... | head -c 100 ends quietly with exit 0", async () => {
  const args = ["generate", ckpt, "--prompt", "the cat", "--tokens", "4000", "--seed", "3"];
  const r = await ssdHead(args, 100);
  assert.equal(r.stdoutBytes.length, 100);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
});

Deno.test("ssd generate refuses --top-k with --dense, and more tokens than the adapter holds", async () => {
  const both = await ssd(["generate", ckpt, "--prompt", "a", "--top-k", "2", "--dense"]);
  assert.match(assertOneErrorLine(both, 1), /--top-k 2 and --dense contradict each other/);
  assert.equal(both.stdout, "");
  const huge = await ssd(["generate", ckpt, "--prompt", "a", "--tokens", "100000000"]);
  const line = assertOneErrorLine(huge, 1);
  assert.match(line, /--tokens 100000000 needs a token buffer of .* MiB/);
  assert.match(line, /this adapter's max\w+ of .* MiB: give --tokens \d+ or less/);
  assert.equal(huge.stdout, "");
});
