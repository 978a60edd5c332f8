/**
 * `ssd bench` as a real subprocess, on a tiny dense checkpoint MoE-fied in
 * memory: the `--json` document (keys of the contract, k = E at the dense
 * loss within 1e-5 relative, FLOPs falling as k/E), the human tables, and
 * bad input (one line on stderr, non-zero exit, nothing on stdout).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { intListArg } from "../../cli/_flags.ts";
import { setupGpu } from "../_helpers.ts";
import { sampleText, TINY_CONFIG } from "../pipelines/_tiny_checkpoint.ts";
import { assertBenchContract } from "../pipelines/bench/_contract.ts";
import { assertOneErrorLine, noAutotune, ssd } from "./_ssd.ts";
import { scratchTiny } from "../pipelines/_scratch.ts";

noAutotune();
await setupGpu();
const { dir, ckpt } = await scratchTiny("ssd_cli_bench_", { seed: 6 });
const data = join(dir, "val.txt");
await Deno.writeTextFile(data, sampleText(2000));
const quick = ["--data", data, "--val-tokens", "500", "--reps", "1", "--batch", "2"];

Deno.test("ssd bench --json: the contract's document; k = E at the dense loss", async () => {
  const r = await ssd(["bench", ckpt, "--experts", "4", "--top-k", "1,4", "--json", ...quick]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "", "no progress with --json");
  const doc = JSON.parse(r.stdout);
  assertBenchContract(doc);
  assert.equal(doc.checkpoint, ckpt);
  assert.equal(doc.experts, 4);
  assert.equal(doc.moefied, true);
  assert.equal(doc.model.d_ff, TINY_CONFIG.d_ff);
  assert.deepEqual(doc.rows.map((x: { top_k: number | null }) => x.top_k), [null, 1, 4]);
  const [dense, k1, k4] = doc.rows;
  assert.ok(Math.abs(k4.val_loss - dense.val_loss) <= 1e-5 * dense.val_loss);
  assert.notEqual(k1.val_loss, dense.val_loss);
  const router = 2 * TINY_CONFIG.d_model * 4 * TINY_CONFIG.n_layer;
  assert.equal((k1.ffn_flops_per_token - router) * 4, dense.ffn_flops_per_token);
  assert.deepEqual(dense.decode.map((x: { batch: number }) => x.batch), [1, 2]);
  assert.equal(dense.prefill.batch, 2);
});

Deno.test("ssd bench prints the setup and the two tables", async () => {
  const r = await ssd(["bench", ckpt, "--experts", "2", "--top-k", "1", ...quick]);
  assert.equal(r.code, 0, r.stderr);
  // In a pipe: the first stage as a plain line (then one per 15 s at most).
  assert.match(r.stderr, /^bench: MoE-fying into 2 experts\n/);
  assert.equal(r.stderr.includes("\r") || r.stderr.includes("\x1b"), false, r.stderr);
  assert.match(r.stdout, /checkpoint {2}.*tiny\.safetensors {2}\(2 experts, MoE-fied in memory\)/);
  assert.match(r.stdout, /Quality and prefill \(prefill batch 2\)/);
  assert.match(r.stdout, /\n {2}dense +- +2,048 +1\.00x/);
  assert.match(r.stdout, /\n {2}moe +1 +1,088 +0\.53x/);
  assert.match(r.stdout, /Decode \(KV cache/);
  assert.equal(r.stdout.match(/\n {2}(dense|moe) +[-\d]+ +[12] +\d+ /g)?.length, 4, r.stdout);
});

Deno.test("intListArg() parses comma lists of positive integers only", () => {
  assert.deepEqual(intListArg("1,2, 8"), [1, 2, 8]);
  for (const bad of ["", "1,,2", "a", "1.5", "0", "-1", "2,x"]) {
    assert.throws(() => intListArg(bad), /comma-separated list of positive integers/, bad);
  }
});

Deno.test("ssd bench: bad input exits non-zero with one line and no output", async () => {
  const cases: [string[], number, RegExp][] = [
    [[ckpt, "--experts", "4", "--top-k", "5"], 1, /--top-k must be in 1\.\.4/],
    [[ckpt, "--experts", "4", "--top-k", "0"], 2, /--top-k.*positive integers/],
    [[ckpt, "--experts", "4", "--top-k", "1,two"], 2, /--top-k.*positive integers, got "1,two"/],
    [[ckpt, "--top-k", "2"], 1, /--top-k needs experts, .* is dense: add --experts/],
    [[ckpt, "--experts", "3"], 1, /--experts 3 does not divide d_ff 32/],
    [[ckpt, "--prompt-len", "5", "--gen", "5"], 1, /must be at most the context 8/],
    [[ckpt, "--batch", "x"], 2, /--batch.*positive integers/],
    [[join(dir, "missing.safetensors")], 1, /Checkpoint file not found/],
    [[ckpt, "--data", join(dir, "none.txt")], 1, /--data: no such file/],
  ];
  for (const [args, code, re] of cases) {
    const r = await ssd(["bench", ...args, "--val-tokens", "100", "--reps", "1"]);
    const line = assertOneErrorLine(r, code);
    assert.match(line, re, args.join(" "));
    assert.equal(r.stdout, "", `nothing on stdout: ${args.join(" ")}`);
  }
});
