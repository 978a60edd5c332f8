/**
 * `ssd demo` (`deno task demo`) end to end as a subprocess, with `--preset
 * tiny` and a schedule that switches within the few steps: training with
 * checkpoints, a switch to sparse and back in metrics.jsonl, the profile of
 * every checkpoint, the bench's dense and MoE rows, and a report page with
 * its plots; the JSON summary points at all of them. A folder holding a run
 * is refused unless --force. Bad flags: one line.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { assertOneErrorLine, ssd } from "./_ssd.ts";

const TINY = [
  "demo",
  "--preset",
  "tiny",
  "--steps",
  "40",
  "--save-every",
  "20",
  "--eval-every",
  "0",
  "--monitor-every",
  "5",
  "--switch-rule",
  "threshold",
  "--stable-threshold",
  "0",
  "--sparse-steps",
  "15",
  "--val-tokens",
  "2048",
  "--bench-tokens",
  "1024",
  "--bench-batch",
  "2",
];

Deno.test("ssd demo --preset tiny: train, profile, bench and report in one run", async () => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "demo");
  try {
    const r = await ssd([...TINY, "--out", out, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.out, out);
    assert.deepEqual(doc.files.checkpoints, [
      join(out, "ckpt-20.safetensors"),
      join(out, "final.safetensors"),
    ]);

    const metrics = (await Deno.readTextFile(doc.files.metrics)).trim().split("\n")
      .map((l) => JSON.parse(l));
    const switches = metrics.filter((m) => m.event === "switch").map((m) => `${m.from}>${m.to}`);
    assert.deepEqual(switches.slice(0, 2), ["dense>sparse", "sparse>dense"]);
    assert.ok(doc.train.sparse_share > 0 && doc.train.ffn_flops_ratio < 1);
    assert.equal(typeof doc.train.val_loss_moe, "number");

    const profile = JSON.parse(await Deno.readTextFile(join(doc.files.profile, "profile.json")));
    assert.equal(profile.checkpoints.length, 2);
    assert.equal(profile.similarity.length, 1);

    const bench = JSON.parse(await Deno.readTextFile(doc.files.bench));
    assert.equal(bench.rows[0].mode, "dense");
    const moe = bench.rows.find((row: { top_k: number | null }) => row.top_k === doc.train.top_k);
    assert.ok(moe, "a bench row at the trained k");
    assert.ok(moe.ffn_flops_per_token < bench.rows[0].ffn_flops_per_token);
    assert.deepEqual(moe.decode.map((d: { batch: number }) => d.batch), [1, 2]);

    const html = await Deno.readTextFile(doc.files.report);
    assert.ok((html.match(/<svg/g) ?? []).length >= 5, "report plots");
    assert.doesNotMatch(html, /<script/);

    // The folder now holds a run: a second demo there is refused before any work...
    const again = await ssd([...TINY, "--out", out]);
    assert.match(assertOneErrorLine(again, 1), /holds an earlier run: --force to replace it/);
    assert.ok(await Deno.stat(doc.files.report), "the earlier run is untouched");
    // ...unless --force, which replaces it.
    const forced = await ssd([...TINY, "--steps", "10", "--out", out, "--force", "--json"]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(JSON.parse(forced.stdout).train.steps, 10);
    await assert.rejects(Deno.stat(join(out, "ckpt-20.safetensors")), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ssd demo: a bad flag is one line and a non-zero exit", async () => {
  const r = await ssd(["demo", "--steps", "many"]);
  assert.notEqual(r.code, 0);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /--steps/);
});

Deno.test("ssd demo --out naming an existing file is one clear line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "taken");
    await Deno.writeTextFile(file, "keep me");
    const r = await ssd([...TINY, "--out", file]);
    assert.match(assertOneErrorLine(r, 1), /--out .*taken is an existing file: give a folder/);
    assert.equal(await Deno.readTextFile(file), "keep me");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
