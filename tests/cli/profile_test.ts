/**
 * `ssd profile` as a real subprocess: `--json` equals `runProfile()` in
 * process, the table shows every checkpoint's layers and the similarity
 * rows, `--out` writes the documented files, and bad input (missing file,
 * bad --tokens, checkpoints of different shapes, a top-k above the expert
 * count) ends with one line on stderr, a non-zero exit, nothing on stdout
 * and no output folder.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DEFAULT_PROFILE_CONFIG, runProfile } from "../../pipelines/profile/run.ts";
import { setupGpu } from "../_helpers.ts";
import { sampleText, TINY_CONFIG, writeTinyCheckpoint } from "../pipelines/_tiny_checkpoint.ts";
import { assertOneErrorLine, noAutotune, ssd } from "./_ssd.ts";
import { scratchDir } from "../pipelines/_scratch.ts";

noAutotune();
await setupGpu();
const dir = await scratchDir("ssd_cli_profile_");
const config = { ...TINY_CONFIG, n_layer: 2, d_ff: 32 };
const a = join(dir, "ckpt-20.safetensors");
const b = join(dir, "ckpt-10.safetensors");
await writeTinyCheckpoint(a, { config, seed: 1, train: { step: 20 } });
await writeTinyCheckpoint(b, { config, seed: 2, train: { step: 10 } });
const text = join(dir, "text.txt");
await Deno.writeTextFile(text, sampleText(8000)); // 400 validation tokens
const ARGS = ["--data", text, "--tokens", "200", "--experts", "4"];

Deno.test("ssd profile --json equals runProfile() and --out writes the arrays", async () => {
  const out = join(dir, "out");
  const r = await ssd(["profile", a, b, ...ARGS, "--json", "--out", out]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  const doc = JSON.parse(r.stdout);
  const want = await runProfile({
    ...DEFAULT_PROFILE_CONFIG,
    checkpoints: [a, b],
    data: text,
    tokens: 200,
    experts: 4,
  });
  assert.deepEqual(doc.checkpoints.map((c: { step: number }) => c.step), [10, 20]);
  for (const key of ["tokens", "ctx", "experts", "top_k", "hist_bins", "source"]) {
    assert.deepEqual(doc[key], (want as unknown as Record<string, unknown>)[key], key);
  }
  assert.equal(doc.top_k, 1);
  // Same kernels and data in both processes: the same numbers.
  assert.deepEqual(doc.similarity, JSON.parse(JSON.stringify(want.similarity)));
  doc.checkpoints.forEach((c: { layers: unknown }, i: number) => {
    assert.deepEqual(c.layers, JSON.parse(JSON.stringify(want.checkpoints[i].layers)));
  });
  const names = [];
  for await (const e of Deno.readDir(out)) names.push(e.name);
  assert.deepEqual(names.sort(), [
    "00_ckpt-10.experts.npy",
    "00_ckpt-10.firing.npy",
    "01_ckpt-20.experts.npy",
    "01_ckpt-20.firing.npy",
    "profile.json",
  ]);
  const saved = JSON.parse(await Deno.readTextFile(join(out, "profile.json")));
  assert.deepEqual(saved.checkpoints, doc.checkpoints);
  // 128-byte header block + 2 layers × 32 neurons × 4 bytes.
  assert.equal((await Deno.stat(join(out, "00_ckpt-10.firing.npy"))).size, 128 + 2 * 32 * 4);
});

Deno.test("ssd profile prints per-layer tables and the similarity rows", async () => {
  const r = await ssd(["profile", a, b, ...ARGS]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^probe +200 tokens of .*text\.txt \(validation part\), windows of 8$/m);
  assert.match(r.stdout, new RegExp(`^\\[1/2\\] ${b} \\(step 10\\)$`, "m"));
  assert.match(r.stdout, new RegExp(`^\\[2/2\\] ${a} \\(step 20\\)$`, "m"));
  const layerRows = r.stdout.match(
    /^ {2}[01] +\d\.\d{4} +\d\.\d{4} +\d\.\d{4} +\d\.\d{4} +[\d.]+ +[\d.]+ +/gm,
  );
  assert.equal(layerRows?.length, 4, r.stdout);
  assert.match(r.stdout, /^pattern similarity of consecutive checkpoints \(E = 4, k = 1\)$/m);
  assert.match(r.stdout, /^ {2}step 10 +step 20 +0 +-?\d\.\d{4} +\d\.\d{4} +(warm|fresh) start$/m);
  assert.match(r.stdout, /^ +mean +-?\d\.\d{4} +\d\.\d{4}$/m);
  assert.match(r.stdout, /^ {2}mean +\d\.\d{4}$/m);
  assert.doesNotMatch(r.stdout, / $/m, "no trailing spaces");
});

Deno.test("ssd profile: bad input exits non-zero with one line and writes nothing", async () => {
  const other = join(dir, "wide.safetensors");
  await writeTinyCheckpoint(other, { config: { ...config, d_model: 32 } });
  const out = join(dir, "never");
  const cases: [string[], number, RegExp][] = [
    [[join(dir, "missing.safetensors")], 1, /not found/],
    [[a, "--tokens", "0"], 2, /--tokens/],
    [[a, "--tokens", "many"], 2, /--tokens/],
    [[a, other], 1, /model configs differ \(d_model 16 vs 32\)/],
    [[a, b, "--top-k", "5"], 1, /--top-k must be in 1\.\.4 \(the experts per layer\), got 5/],
  ];
  for (const [args, code, msg] of cases) {
    const r = await ssd(["profile", ...args, "--data", text, "--experts", "4", "--out", out]);
    assert.match(assertOneErrorLine(r, code), msg);
    assert.equal(r.stdout, "");
  }
  // Refused up front, also for one checkpoint (no pair to partition).
  const seven = await ssd(["profile", a, "--data", text, "--experts", "7", "--out", out]);
  assert.match(assertOneErrorLine(seven, 1), /--experts 7 does not divide d_ff 32/);
  await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound);
});
