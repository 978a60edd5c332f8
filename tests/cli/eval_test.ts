/**
 * `ssd eval` as a real subprocess: the table, `--json` with exactly nll,
 * bpb, ppl, tokens and top_k and the same numbers as `runEval()` in
 * process, and bad input (one line on stderr, no stack trace, nothing on
 * stdout, no file written).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DEFAULT_EVAL_CONFIG, runEval } from "../../pipelines/eval.ts";
import { setupGpu } from "../_helpers.ts";
import { listDir, sampleText, TINY_CONFIG, truncateCopy } from "../pipelines/_tiny_checkpoint.ts";
import { assertOneErrorLine, noAutotune, ssd } from "./_ssd.ts";
import { scratchTiny } from "../pipelines/_scratch.ts";

noAutotune();
await setupGpu();
const { dir, ckpt } = await scratchTiny("ssd_cli_eval_");
const text = join(dir, "text.txt");
await Deno.writeTextFile(text, sampleText(300));

Deno.test("ssd eval --json prints exactly nll, bpb, ppl, tokens, top_k, as runEval() computes", async () => {
  const r = await ssd(["eval", ckpt, "--data", text, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  const doc = JSON.parse(r.stdout);
  assert.deepEqual(Object.keys(doc), ["nll", "bpb", "ppl", "tokens", "top_k"]);
  const want = await runEval({ checkpoint: ckpt, data: text, batch: DEFAULT_EVAL_CONFIG.batch });
  assert.equal(doc.tokens, 299);
  assert.equal(doc.top_k, null);
  for (const k of ["nll", "bpb", "ppl"] as const) {
    // Same kernels (autotune off in both), so this should agree to the last bit; 1e-5 is slack.
    assert.ok(Math.abs(doc[k] - want[k]) <= 1e-5 * want[k], `${k}: ${doc[k]} vs ${want[k]}`);
  }
  assert.ok(Math.abs(doc.bpb - doc.nll / Math.LN2) < 1e-12);
  assert.ok(Math.abs(doc.ppl - Math.exp(doc.nll)) <= 1e-12 * doc.ppl);
});

Deno.test("ssd eval prints a table with nats/token, bits/byte, perplexity and the sources", async () => {
  const r = await ssd(["eval", ckpt, "--data", text, "--batch", "3"]);
  assert.equal(r.code, 0, r.stderr);
  const want = await runEval({ checkpoint: ckpt, data: text, batch: 3 });
  assert.match(r.stdout, new RegExp(`^  checkpoint +${ckpt}$`, "m"));
  assert.match(r.stdout, new RegExp(`^  data +${text}$`, "m"));
  assert.match(
    r.stdout,
    new RegExp(`^  tokens +299 scored \\(windows of ${TINY_CONFIG.ctx}\\)$`, "m"),
  );
  assert.match(r.stdout, /^ {2}experts +dense$/m);
  // Parsed back and compared at the printed precision (another process may round the other way).
  const shown = (label: string) => {
    const m = new RegExp(`^  ${label} +(\\d+\\.\\d+)$`, "m").exec(r.stdout);
    assert.ok(m, `${label} row missing:\n${r.stdout}`);
    return Number(m[1]);
  };
  assert.ok(Math.abs(shown("nats/token") - want.nll) <= 6e-5);
  assert.ok(Math.abs(shown("bits/byte") - want.bpb) <= 6e-5);
  assert.ok(Math.abs(shown("perplexity") - want.ppl) <= 6e-4 + 1e-5 * want.ppl);
});

Deno.test("ssd eval --help describes --data, --batch, --top-k, --dense and --json", async () => {
  const r = await ssd(["eval", "--help"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Usage: ssd eval \[options\] <checkpoint>/m);
  for (const flag of ["--data <path>", "--batch <n>", "--json"]) assert.ok(r.stdout.includes(flag));
  assert.match(r.stdout, /--top-k <k>/);
  assert.match(r.stdout, /--dense/);
});

Deno.test("ssd eval: bad input exits non-zero with one line and writes nothing", async () => {
  const empty = join(dir, "empty.txt");
  await Deno.writeTextFile(empty, "");
  const one = join(dir, "one.txt");
  await Deno.writeTextFile(one, "x");
  const cut = join(dir, "cut.safetensors");
  await truncateCopy(ckpt, cut, 2000);
  const before = await listDir(dir);
  const cases: [string[], number, RegExp][] = [
    [["eval", join(dir, "missing.safetensors"), "--data", text], 1, /Checkpoint file not found/],
    [["eval", cut, "--data", text], 1, /cut\.safetensors.*(truncated|ended|only)/],
    [["eval", ckpt, "--data", empty], 1, /--data: file is empty/],
    [["eval", ckpt, "--data", one], 1, /has 1 token: need at least 2/],
    [["eval", ckpt, "--data", join(dir, "nope.txt")], 1, /--data: no such file or folder/],
    [["eval", ckpt, "--data", text, "--batch", "0"], 2, /--batch.*positive integer/],
    [["eval", ckpt, "--data", text, "--batch", "two"], 2, /--batch.*integer/],
    [["eval", ckpt, "--data", text, "--bogus"], 2, /unknown option '--bogus'/],
    [
      ["eval", ckpt, "--data", text, "--top-k", "2", "--dense"],
      1,
      /--top-k 2 and --dense contradict/,
    ],
    [["eval"], 2, /missing required argument 'checkpoint'/],
  ];
  for (const [args, code, re] of cases) {
    const r = await ssd(args);
    const line = assertOneErrorLine(r, code);
    assert.match(line, re, args.join(" "));
    assert.equal(r.stdout, "", `no output: ${args.join(" ")}`);
  }
  assert.deepEqual(await listDir(dir), before, "no file created");
});
