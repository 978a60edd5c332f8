/**
 * `runReport()` on synthetic runs in the real metrics format and on a tiny
 * real training run: every plot is on the page with marks that carry data,
 * titles, shaded sparse phases, the switch-threshold rule, bench plots only
 * with bench files, `--svg` files, long runs cut to a few hundred points,
 * the per-run totals, and bad input (one message naming the file and line,
 * no file written). The series helpers are checked against direct sums.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runReport } from "../../../pipelines/report/run.ts";
import { readRun, summarizeRun } from "../../../pipelines/report/data.ts";
import {
  changePoints,
  downsample,
  MAX_POINTS,
  movingMean,
  type Point,
  sparseSpans,
} from "../../../pipelines/report/series.ts";
import { ConfigError } from "../../../core/errors.ts";
import type { StepRecord } from "../../../pipelines/report/data.ts";
import { resolveTrainConfig } from "../../../pipelines/train/config.ts";
import { runTrain } from "../../../pipelines/train/run.ts";
import { setupGpu } from "../../_helpers.ts";
import { figures, writeBench, writeSyntheticRun } from "./_fixtures.ts";
import { listDir } from "../_tiny_checkpoint.ts";
import { scratchDir } from "../_scratch.ts";

const dir = await scratchDir("ssd_report_");

const ssdRun = await writeSyntheticRun(join(dir, "ssd"), {
  schedule: "ssd",
  steps: 1200,
  switchAt: 600,
  sparseSteps: 300,
  monitorEvery: 100,
  evalEvery: 200,
  checkpoint: true,
  threshold: 0.8,
});
const denseRun = await writeSyntheticRun(join(dir, "dense"), { schedule: "dense", steps: 300 });
const TRAINING_PLOTS = ["loss", "activation", "similarity", "throughput", "ffn_flops"];

/** Leaf mark groups of one type in an SVG (`line`, `rect`, `rule`, `symbol`, `text`). */
function marks(svg: string, type: string): string[] {
  const re = new RegExp(`<g class="mark-${type} role-mark[^"]*"[^>]*>([\\s\\S]*?)</g>`, "g");
  return [...svg.matchAll(re)].map((m) => m[1]);
}

/** Vertices of every path in a mark group (`M`/`L` commands). */
function pathPoints(group: string): number[] {
  return [...group.matchAll(/ d="([^"]*)"/g)].map((m) => (m[1].match(/[ML]/g) ?? []).length);
}

Deno.test("runReport() puts every training plot on the page, each with drawn data", async () => {
  const out = join(dir, "page", "report.html");
  const r = await runReport({ runs: [ssdRun, denseRun], out, svg_dir: null, bench: [] });
  assert.deepEqual(r.plots, TRAINING_PLOTS);
  assert.deepEqual(r.skipped, []);
  assert.deepEqual(r.warnings, [], "vega-lite warnings mean a spec is wrong");
  const html = await Deno.readTextFile(out);
  assert.equal(r.bytes, new TextEncoder().encode(html).length);
  const figs = figures(html);
  assert.deepEqual([...figs.keys()], TRAINING_PLOTS);
  assert.equal(html.match(/<svg /g)?.length, TRAINING_PLOTS.length, "one <svg> per plot");
  const titles: Record<string, string> = {
    loss: "Training and validation loss",
    activation: "Activation ratio per FFN layer",
    similarity: "Pattern similarity",
    throughput: "Training throughput",
    ffn_flops: "FFN FLOPs per training step",
  };
  for (const [id, svg] of figs) {
    assert.ok(svg.includes(`>${titles[id]}</text>`), `${id}: title drawn`);
    const lines = marks(svg, "line");
    assert.ok(lines.length > 0, `${id}: has a line mark`);
    // Each run with data draws a path with many vertices.
    const pts = lines.flatMap(pathPoints);
    // similarity: 7 checks with a value; FLOPs: steps at the switches; the rest: hundreds of steps.
    const least = ({ similarity: 7, ffn_flops: 3 } as Record<string, number>)[id] ?? 100;
    assert.ok(Math.max(...pts) >= least, `${id}: drawn lines ${pts}`);
  }
  // Legends name both runs, labelled with their schedule.
  assert.ok(figs.get("loss")!.includes(">ssd</text>"));
  assert.ok(figs.get("loss")!.includes(">dense</text>"));
  // Three layers → three activation panels.
  for (const l of [0, 1, 2]) assert.ok(figs.get("activation")!.includes(`>layer ${l}</text>`));
  // Self-contained: nothing to load, nothing to run.
  // (url(#clipN) refers to a clip path in the same SVG.)
  const external = html.match(/<script|<link|<img| src=|url\((?!#)|@import/i);
  assert.equal(external?.[0], undefined, "an external resource or a script");
  const ids = [...html.matchAll(/ id="([^"]+)"/g)].map((m) => m[1]);
  assert.equal(new Set(ids).size, ids.length, "ids are unique across the inline SVGs");
});

Deno.test("runReport() shades sparse phases per run and draws the threshold from the checkpoint", async () => {
  const out = join(dir, "phases.html");
  await runReport({ runs: [ssdRun, denseRun], out, svg_dir: null, bench: [] });
  const figs = figures(await Deno.readTextFile(out));
  // The ssd run has one sparse span (steps 601..900): one shaded rect in each step plot.
  for (const id of ["loss", "similarity", "throughput"]) {
    const rects = marks(figs.get(id)!, "rect");
    assert.equal(rects.length, 1, `${id}: one phase layer (the dense run has none)`);
    assert.equal(pathPoints(rects[0]).length, 1, `${id}: one sparse interval`);
  }
  const sim = figs.get("similarity")!;
  assert.equal(marks(sim, "rule").length, 1);
  assert.match(marks(sim, "rule")[0], /stroke-dasharray/);
  assert.ok(sim.includes(">switch threshold 0.8</text>"));

  // A dense-only report has no shading, no similarity plot (nothing monitored) and says why.
  const denseOut = join(dir, "dense_only.html");
  const r = await runReport({ runs: [denseRun], out: denseOut, svg_dir: null, bench: [] });
  assert.deepEqual(r.plots, ["loss", "activation", "throughput", "ffn_flops"]);
  assert.deepEqual(r.skipped.map((s) => s.id), ["similarity"]);
  const html = await Deno.readTextFile(denseOut);
  assert.equal(marks(figures(html).get("loss")!, "rect").length, 0);
  assert.match(html, /similarity: no run logged a pattern similarity/);
});

Deno.test("runReport() adds the bench plots only when bench files are given", async () => {
  const b1 = await writeBench(join(dir, "bench_ssd.json"), "runs/ssd/final.safetensors", [2, 4, 8]);
  const b2 = await writeBench(join(dir, "bench_dense.json"), "runs/dense/final.safetensors", [4]);
  const out = join(dir, "bench.html");
  const r = await runReport({ runs: [ssdRun], out, svg_dir: null, bench: [b1, b2] });
  assert.deepEqual(r.plots, [...TRAINING_PLOTS, "bench_speed", "bench_loss"]);
  assert.deepEqual(r.warnings, []);
  const html = await Deno.readTextFile(out);
  const figs = figures(html);
  const speed = figs.get("bench_speed")!;
  assert.ok(speed.includes(">prefill</text>") && speed.includes(">decode, batch 1</text>"));
  // Per panel: a dense rule per bench file, and the MoE line of the file with 3 ks has 3 vertices.
  assert.equal(marks(speed, "rule").length, 2);
  for (const rules of marks(speed, "rule")) assert.equal(rules.match(/<line /g)?.length, 2);
  // Each series is a line mark of its own: per panel, 3 ks and 1 k.
  assert.deepEqual(marks(speed, "line").flatMap(pathPoints).sort(), [1, 1, 3, 3]);
  for (const dots of marks(speed, "symbol")) assert.equal(dots.match(/<path /g)?.length, 4);
  const loss = figs.get("bench_loss")!;
  assert.equal(marks(loss, "rule").length, 1);
  assert.ok(loss.includes(">Validation loss vs experts per token</text>"));
  // The tables: one per file, a row per model, decode speedup against dense.
  assert.match(html, /<h2>Inference benchmark<\/h2>/);
  assert.match(html, /<td class="l">MoE k=8<\/td>/);
  assert.match(html, /<td class="l">dense<\/td>(<td>[^<]*<\/td>){5}<td>1\.00x<\/td>/);

  const plain = await runReport({ runs: [ssdRun], out, svg_dir: null, bench: [] });
  assert.deepEqual(plain.plots, TRAINING_PLOTS);
  assert.doesNotMatch(await Deno.readTextFile(out), /Inference benchmark|bench_speed/);
});

Deno.test("runReport() with svg_dir writes each plot as its own SVG, the same as inline", async () => {
  const svgDir = join(dir, "svg");
  const out = join(dir, "svg.html");
  const b = await writeBench(join(dir, "bench_svg.json"), "x.safetensors", [4]);
  const r = await runReport({ runs: [ssdRun], out, svg_dir: svgDir, bench: [b] });
  assert.deepEqual(r.svg, r.plots.map((id) => join(svgDir, `${id}.svg`)));
  assert.deepEqual(await listDir(svgDir), r.plots.map((id) => `${id}.svg`).sort());
  const figs = figures(await Deno.readTextFile(out));
  for (const id of r.plots) {
    const file = await Deno.readTextFile(join(svgDir, `${id}.svg`));
    assert.match(
      file,
      /^<\?xml version="1.0" encoding="UTF-8"\?>\n<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/,
    );
    const inline = figs.get(id)!.match(/<svg[\s\S]*<\/svg>/)![0];
    assert.equal(file.trim().split("\n").slice(1).join("\n"), inline, `${id}.svg`);
  }
});

Deno.test("runReport() cuts long runs to at most MAX_POINTS per series and keeps the page small", async () => {
  const long = await writeSyntheticRun(join(dir, "long"), {
    schedule: "ssd",
    steps: 6000,
    switchAt: 3000,
    sparseSteps: 1500,
    monitorEvery: 500,
  });
  const out = join(dir, "long.html");
  const r = await runReport({ runs: [long], out, svg_dir: null, bench: [] });
  const figs = figures(await Deno.readTextFile(out));
  for (const id of ["loss", "activation", "throughput"]) {
    const pts = marks(figs.get(id)!, "line").flatMap(pathPoints);
    assert.ok(Math.max(...pts) <= MAX_POINTS, `${id}: ${Math.max(...pts)} vertices`);
    assert.ok(Math.max(...pts) >= MAX_POINTS / 4, `${id}: still detailed`);
  }
  // Two FLOPs changes (dense→sparse→dense): 6 points, drawn as steps, not 6000.
  const flops = marks(figs.get("ffn_flops")!, "line").flatMap(pathPoints);
  assert.ok(Math.max(...flops) <= 12, `ffn_flops: ${flops} vertices`);
  assert.ok(r.bytes < 250_000, `page ${r.bytes} bytes`);
});

Deno.test("summarizeRun() agrees between checkpoint accounting and the metrics alone", async () => {
  const run = await readRun(ssdRun);
  assert.equal(run.schedule, "ssd");
  assert.equal(run.checkpoint?.stable_threshold, 0.8);
  const fromCkpt = summarizeRun(run);
  const fromMetrics = summarizeRun({ ...run, checkpoint: null });
  assert.equal(fromCkpt.sparse_share, 300 / 1200);
  assert.equal(fromMetrics.sparse_share, 300 / 1200);
  const want = (900 * 1207959552 + 300 * 320864256) / (1200 * 1207959552);
  assert.ok(Math.abs(fromCkpt.flops_ratio! - want) < 1e-12);
  assert.ok(Math.abs(fromMetrics.flops_ratio! - want) < 1e-12);
  // The checkpoint's wall time adds the monitor overhead (1.5 s) to the step times.
  assert.ok(Math.abs(fromCkpt.wall_s! - fromMetrics.wall_s! - 1.5) < 1e-9);
  assert.equal(fromCkpt.val_loss, 1.93);
  assert.equal(fromCkpt.val_loss_moe, 1.98);
  assert.equal(fromCkpt.top_k, 4);
});

Deno.test("runReport() on a tiny real SSD training run", async () => {
  await setupGpu();
  Deno.env.set("SSD_NO_AUTOTUNE", "1");
  const data = join(dir, "data.txt");
  await Deno.writeTextFile(data, (await Deno.readTextFile("README.md")).repeat(2));
  const runDir = join(dir, "real");
  const trained = await runTrain(
    await resolveTrainConfig({
      preset: "tiny",
      steps: 40,
      data,
      schedule: "ssd",
      monitor_every: 10,
      switch_rule: "threshold",
      stable_threshold: 0,
      patience: 1,
      sparse_steps: 10,
      eval_every: 20,
      save_every: 0,
      out: runDir,
    }),
  );
  const out = join(dir, "real.html");
  const r = await runReport({ runs: [runDir], out, svg_dir: null, bench: [] });
  assert.deepEqual(r.plots, TRAINING_PLOTS);
  assert.deepEqual(r.warnings, []);
  assert.equal(r.runs[0].schedule, "ssd");
  assert.equal(r.runs[0].steps, 40);
  assert.equal(r.runs[0].val_loss, trained.val!.nll);
  const html = await Deno.readTextFile(out);
  const figs = figures(html);
  assert.ok(figs.get("similarity")!.includes(">switch threshold 0</text>"));
  assert.ok(trained.switches.length >= 1, "the run switched to sparse");
  assert.equal(marks(figs.get("loss")!, "rect").length, 1, "its sparse phase is shaded");
  // Validation dots at steps 20 and 40 (the final one replaces step 40's).
  const dots = marks(figs.get("loss")!, "symbol")[0].match(/<path /g)?.length;
  assert.equal(dots, 2);
  // The table shows the checkpoint's numbers.
  assert.ok(html.includes(`<td>${trained.val!.nll.toFixed(4)}</td>`));
  const ratio = `${(100 * trained.accounting.flops_ratio).toFixed(1)}%`;
  assert.ok(html.includes(`<td>${ratio}</td>`), `FLOPs ratio ${ratio}`);
});

Deno.test("runReport(): bad input names the file and line, and writes nothing", async () => {
  const bad = join(dir, "bad");
  await Deno.mkdir(bad);
  const run = async (name: string, text: string) => {
    const d = join(bad, name);
    await Deno.mkdir(d);
    await Deno.writeTextFile(join(d, "metrics.jsonl"), text);
    return d;
  };
  const good = (await Deno.readTextFile(join(denseRun, "metrics.jsonl"))).split("\n");
  const withLine = (i: number, line: string) =>
    [...good.slice(0, i), line, ...good.slice(i)].join("\n");
  const noMetrics = join(bad, "no_metrics");
  await Deno.mkdir(noMetrics);
  const notJson = join(bad, "bench_garbled.json");
  await Deno.writeTextFile(notJson, "{ rows: ");
  const noRows = join(bad, "bench_norows.json");
  await Deno.writeTextFile(noRows, JSON.stringify({ checkpoint: "x", rows: [] }));
  const badRow = join(bad, "bench_badrow.json");
  await Deno.writeTextFile(
    badRow,
    JSON.stringify({ rows: [{ mode: "dense", top_k: null, prefill: { tokens_per_s: "fast" } }] }),
  );
  const cases: [string[], string[], RegExp][] = [
    [[join(bad, "missing")], [], /Run folder .*missing not found/],
    [[noMetrics], [], /no_metrics has no metrics\.jsonl/],
    [[await run("empty", "")], [], /empty\/metrics\.jsonl holds no training steps/],
    [
      [await run("garbled", withLine(5, '{"step": 5, "pha'))],
      [],
      /garbled\/metrics\.jsonl line 6: not valid JSON/,
    ],
    [[await run("blank", withLine(3, ""))], [], /blank\/metrics\.jsonl line 4: the line is empty/],
    [
      [await run("noloss", withLine(2, '{"step":3,"phase":"dense"}'))],
      [],
      /noloss\/metrics\.jsonl line 3: "loss" is missing/,
    ],
    [
      [await run("phase", withLine(0, '{"step":1,"phase":"moe","loss":1}'))],
      [],
      /line 1: "phase" is "moe", expected "dense" or "sparse"/,
    ],
    [
      [await run("array", withLine(0, "[1,2]"))],
      [],
      /array\/metrics\.jsonl line 1: the line is an array, expected a JSON object/,
    ],
    [
      [await run("act", withLine(1, '{"step":2,"phase":"dense","loss":2,"act_ratio":[0.5,"x"]}'))],
      [],
      /line 2: "act_ratio\[1\]" is "x", expected a number/,
    ],
    [[denseRun], [join(bad, "nope.json")], /Bench file .*nope\.json not found/],
    [[denseRun], [notJson], /Bench file .*bench_garbled\.json is not valid JSON/],
    [
      [denseRun],
      [noRows],
      /bench_norows\.json: "rows" is an array.*non-empty|bench_norows\.json: "rows"/,
    ],
    [
      [denseRun],
      [badRow],
      /bench_badrow\.json rows\[0\]\.prefill: "tokens_per_s" is "fast", expected a number/,
    ],
    [[], [], /No run folder given/],
  ];
  for (const [runs, bench, re] of cases) {
    const out = join(dir, "bad_out", "report.html");
    const svgDir = join(dir, "bad_svg");
    await assert.rejects(
      runReport({ runs, out, svg_dir: svgDir, bench }),
      (e: Error) => {
        assert.ok(e instanceof ConfigError, `${e.name}: ${e.message}`);
        assert.match(e.message, re);
        assert.equal(e.message.split("\n").length, 1);
        return true;
      },
    );
    await assert.rejects(Deno.stat(join(dir, "bad_out")), Deno.errors.NotFound, "no output folder");
    await assert.rejects(Deno.stat(svgDir), Deno.errors.NotFound, "no svg folder");
  }
});

Deno.test("runReport(): an unwritable output is one error and leaves no temporary file", async () => {
  const target = join(dir, "is_a_dir.html");
  await Deno.mkdir(target);
  await assert.rejects(
    runReport({ runs: [denseRun], out: target, svg_dir: null, bench: [] }),
    (e: Error) => e instanceof ConfigError && /Cannot write .*is_a_dir\.html/.test(e.message),
  );
  assert.deepEqual((await listDir(dir)).filter((n) => n.includes(".tmp-")), []);
});

// ---------------------------------------------------------------------------
// Series helpers

Deno.test("movingMean() is the trailing mean over the window, nulls skipped and kept", () => {
  const pts: Point[] = [1, 2, 3, null, 5, 6].map((y, i) => ({ x: i + 1, y }));
  assert.deepEqual(movingMean(pts, 2).map((p) => p.y), [1, 1.5, 2.5, null, 5, 5.5]);
  assert.deepEqual(movingMean(pts, 3).map((p) => p.y), [1, 1.5, 2, null, 4, 5.5]);
  assert.deepEqual(movingMean(pts, 1).map((p) => p.y), [1, 2, 3, null, 5, 6]);
});

Deno.test("downsample() keeps short series and averages long ones in groups, gaps kept", () => {
  const short: Point[] = [{ x: 1, y: 1 }, { x: 2, y: null }];
  assert.deepEqual(downsample(short, 5), short);
  const n = 1001;
  const long: Point[] = Array.from(
    { length: n },
    (_, i) => ({ x: i + 1, y: i >= 396 && i < 418 ? null : i }),
  );
  const d = downsample(long, 100);
  assert.ok(d.length <= 100, `${d.length} points`);
  assert.equal(d[0].x, 6); // mean of steps 1..11
  assert.equal(d[0].y, 5);
  assert.ok(d.some((p) => p.y === null), "the group inside the nulls stays a gap");
  assert.equal(d.length, 91); // groups of ceil(1001 / 100) = 11
  assert.equal(d.at(-1)!.x, 996);
});

const rec = (step: number, phase: "dense" | "sparse", flops: number): StepRecord => ({
  step,
  phase,
  loss: 1,
  val_loss: null,
  tokens_per_s: null,
  ms_per_step: null,
  ffn_flops: flops,
  ffn_flops_dense: 4,
  act_ratio: null,
  similarity: null,
});

Deno.test("changePoints() and sparseSpans() redraw the phases exactly", () => {
  const phases = "ddssssddds".split("").map((c, i) =>
    rec(i + 1, c === "s" ? "sparse" : "dense", c === "s" ? 1 : 4)
  );
  assert.deepEqual(sparseSpans(phases), [{ x0: 2, x1: 6 }, { x0: 9, x1: 10 }]);
  assert.deepEqual(
    changePoints(phases, (s) => s.ffn_flops).map((p) => [p.x, p.y]),
    [[1, 4], [2, 4], [3, 1], [6, 1], [7, 4], [9, 4], [10, 1]],
  );
  assert.deepEqual(sparseSpans([rec(1, "sparse", 1)]), [{ x0: 0, x1: 1 }]);
});
