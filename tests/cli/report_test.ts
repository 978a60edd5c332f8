/**
 * `ssd report` as a real subprocess: a page and SVGs from two runs and a
 * bench file with `--json`, the human summary, and bad input (one line on
 * stderr, non-zero exit, nothing on stdout, no file written).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { figures, writeBench, writeSyntheticRun } from "../pipelines/report/_fixtures.ts";
import { listDir } from "../pipelines/_tiny_checkpoint.ts";
import { assertOneErrorLine, ssd } from "./_ssd.ts";
import { scratchDir } from "../pipelines/_scratch.ts";

const dir = await scratchDir("ssd_cli_report_");
const runA = await writeSyntheticRun(join(dir, "runs", "ssd"), {
  schedule: "ssd",
  steps: 400,
  switchAt: 200,
  sparseSteps: 100,
  monitorEvery: 50,
  checkpoint: true,
});
const runB = await writeSyntheticRun(join(dir, "runs", "sparse"), {
  schedule: "sparse",
  steps: 400,
  switchAt: 40,
});
const bench = await writeBench(join(dir, "bench.json"), join(runA, "final.safetensors"), [2, 4]);

Deno.test("ssd report --json writes the page and the SVGs and describes them", async () => {
  const out = join(dir, "out", "report.html");
  const svg = join(dir, "out", "svg");
  const r = await ssd(["report", runA, runB, "-o", out, "--svg", svg, "--bench", bench, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  const doc = JSON.parse(r.stdout);
  const plots = [
    "loss",
    "activation",
    "similarity",
    "throughput",
    "ffn_flops",
    "bench_speed",
    "bench_loss",
  ];
  assert.deepEqual(doc.plots, plots);
  assert.equal(doc.out, out);
  assert.deepEqual(doc.svg, plots.map((p) => join(svg, `${p}.svg`)));
  assert.deepEqual(doc.bench, [bench]);
  assert.deepEqual(doc.runs.map((x: { label: string }) => x.label), ["ssd", "sparse"]);
  assert.deepEqual(doc.runs.map((x: { steps: number }) => x.steps), [400, 400]);
  const html = await Deno.readTextFile(out);
  assert.equal(doc.bytes, new TextEncoder().encode(html).length);
  assert.deepEqual([...figures(html).keys()], plots);
  assert.deepEqual(await listDir(svg), plots.map((p) => `${p}.svg`).sort());
});

Deno.test("ssd report prints where the page went, one line per run", async () => {
  const out = join(dir, "plain.html");
  const r = await ssd(["report", runA, "--out", out]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^wrote ${out} \\(\\d+ KiB, 5 plots, 1 run\\)$`, "m"));
  assert.match(r.stdout, /^ {2}ssd: 400 steps, val loss 1\.9300$/m);
  assert.ok((await Deno.stat(out)).size > 10_000);
});

Deno.test("ssd report on a live or killed run draws the complete lines and notes the partial one", async () => {
  const live = join(dir, "runs", "live");
  await Deno.mkdir(live, { recursive: true });
  const lines = (await Deno.readTextFile(join(runB, "metrics.jsonl"))).split("\n").slice(0, 101);
  // 100 complete step lines, then a line cut off mid-write.
  await Deno.writeTextFile(
    join(live, "metrics.jsonl"),
    lines.join("\n") + "\n" + '{"step": 101, "lo',
  );
  const out = join(dir, "live.html");
  const r = await ssd(["report", live, "--out", out]);
  assert.equal(r.code, 0, r.stderr);
  const notes = r.stderr.split("\n").filter((l) => l !== "");
  assert.equal(notes.length, 1, r.stderr);
  assert.match(notes[0], /metrics\.jsonl line 102 is incomplete .*: drew the 101 complete lines/);
  assert.match(r.stdout, /^ {2}live · sparse: 100 steps, unfinished$/m);
  assert.ok((await Deno.stat(out)).size > 10_000);
});

Deno.test("ssd report: bad input exits non-zero with one line and writes nothing", async () => {
  const bad = join(dir, "bad");
  await Deno.mkdir(join(bad, "garbled"), { recursive: true });
  const lines = (await Deno.readTextFile(join(runB, "metrics.jsonl"))).split("\n");
  lines.splice(7, 0, "{not json");
  await Deno.writeTextFile(join(bad, "garbled", "metrics.jsonl"), lines.join("\n"));
  await Deno.mkdir(join(bad, "nometrics"));
  const badBench = join(bad, "bench.json");
  await Deno.writeTextFile(badBench, JSON.stringify({ rows: [{ mode: "fast" }] }));
  const before = await listDir(bad);
  const out = join(bad, "out", "report.html");
  const cases: [string[], number, RegExp][] = [
    [[join(bad, "missing")], 1, /Run folder .*missing not found/],
    [[join(bad, "nometrics")], 1, /nometrics has no metrics\.jsonl/],
    [[join(bad, "garbled")], 1, /garbled\/metrics\.jsonl line 8: not valid JSON/],
    [[runA, "--bench", badBench], 1, /bench\.json rows\[0\]: "mode" is "fast"/],
    [[runA, "--bench", join(bad, "nope.json")], 1, /Bench file .*nope\.json not found/],
    [[], 2, /missing required argument 'run_dirs'/],
  ];
  for (const [args, code, re] of cases) {
    const r = await ssd(["report", ...args, "-o", out, "--svg", join(bad, "svg")]);
    const line = assertOneErrorLine(r, code);
    assert.match(line, re, args.join(" "));
    assert.equal(r.stdout, "", `no output: ${args.join(" ")}`);
    assert.deepEqual(await listDir(bad), before, `no file created: ${args.join(" ")}`);
  }
});
