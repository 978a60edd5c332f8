/**
 * `runReport()` with a schedule sweep document (written by the test with
 * the sweep's own builders): the two Pareto plots with one point per
 * schedule and mode, the frontier per mode, the defaults ringed and
 * labelled, dense at (1, 0), the table of every row; alone or beside
 * training runs; and bad documents (one line naming the file, nothing
 * written).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runReport } from "../../../pipelines/report/run.ts";
import { readScheduleGrid } from "../../../pipelines/report/schedules.ts";
import { DENSE_MODE, frontierRows, gridPoints } from "../../../pipelines/report/schedule_charts.ts";
import { ConfigError } from "../../../core/errors.ts";
import { figures, writeSyntheticRun } from "./_fixtures.ts";
import { gridFixture, OUTCOMES, writeGrid } from "./_grid_fixture.ts";
import { scratchDir } from "../_scratch.ts";

const dir = await scratchDir("ssd_report_grid_");
const gridFile = await writeGrid(join(dir, "grid.json"));
const NAMES = Object.keys(OUTCOMES);
const MOE = "as MoE (top-4)";

/** Leaf mark groups of one type and layer in an SVG. */
function layer(svg: string, type: string, n: number): string {
  const re = new RegExp(
    `<g class="mark-${type} role-mark layer_${n}_marks"[^>]*>([\\s\\S]*?)</g>`,
    "g",
  );
  return [...svg.matchAll(re)].map((m) => m[1]).join("");
}

/** The aria-labels of the items in a mark group: their data, as vega writes it. */
function labels(group: string): string[] {
  return [...group.matchAll(/aria-label="([^"]*)"/g)].map((m) => m[1]);
}

Deno.test("runReport() with only a sweep draws both Pareto plots and the table", async () => {
  const out = join(dir, "grid.html");
  const r = await runReport({ runs: [], out, svg_dir: null, bench: [], schedules: gridFile });
  assert.deepEqual(r.plots, ["schedules_flops", "schedules_wall"]);
  assert.deepEqual(r.warnings, [], "vega-lite warnings mean a spec is wrong");
  assert.equal(r.schedules, gridFile);
  assert.deepEqual(r.runs, []);
  const html = await Deno.readTextFile(out);
  assert.doesNotMatch(html, /<h2>Runs<\/h2>|<h2>Training<\/h2>/);
  assert.match(html, /<h2>Schedule sweep<\/h2>/);
  const figs = figures(html);
  assert.deepEqual([...figs.keys()], ["schedules_flops", "schedules_wall"]);
  const withMoe = NAMES.filter((n) => OUTCOMES[n][1].moe !== undefined);
  for (
    const [id, title] of [
      ["schedules_flops", "Loss gap vs FFN FLOPs"],
      ["schedules_wall", "Loss gap vs wall time"],
    ]
  ) {
    const svg = figs.get(id)!;
    assert.ok(svg.includes(`>${title}</text>`), `${id}: title`);
    // One point per row evaluated dense, one per row with an MoE loss.
    const points = labels(layer(svg, "symbol", 2));
    assert.equal(points.length, NAMES.length + withMoe.length, `${id}: points`);
    for (const n of NAMES) {
      assert.ok(points.some((p) => p.includes(`schedule: ${n};`)), `${id}: ${n} drawn`);
      assert.ok(svg.includes(`>${n}</text>`), `${id}: ${n} in the legend`);
    }
    const moePoints = points.filter((p) => p.includes(`evaluated: ${MOE}`));
    assert.equal(moePoints.length, withMoe.length);
    assert.ok(!moePoints.some((p) => p.includes("schedule: final-dense-0;")), "never sparse");
    // Two marker shapes, named in the legend.
    assert.ok(svg.includes(`>${DENSE_MODE}</text>`) && svg.includes(`>${MOE}</text>`));
    // Dense at (1, 0).
    const dense = points.find((p) => p.includes("schedule: dense;"))!;
    assert.match(dense, /\(× dense\): 1; validation loss gap to dense \(%\): 0;/);
    // The defaults: ringed in both modes and labelled; dense labelled.
    assert.equal(labels(layer(svg, "symbol", 3)).length, 2, `${id}: two rings`);
    const texts = [...layer(svg, "text", 4).matchAll(/>([^<]+)<\/text>/g)].map((m) => m[1]);
    assert.deepEqual(texts.sort(), ["defaults", "defaults", "dense"]);
    // One frontier line per mode, drawn as steps between its vertices.
    const lines = labels(layer(svg, "line", 1));
    assert.equal(lines.length, 2, `${id}: a frontier per mode`);
    assert.ok(lines.some((l) => l.includes(`Pareto frontier: ${DENSE_MODE}`)));
    assert.ok(lines.some((l) => l.includes(`Pareto frontier: ${MOE}`)));
  }
  // The table: every row, the defaults marked, overrides as flags, the sparse phases.
  const rows = [...html.matchAll(/<tr><td class="l"><span class="swatch"[^>]*><\/span>([^<]+)/g)]
    .map((m) => m[1].trim());
  assert.deepEqual(rows, NAMES);
  assert.match(html, /defaults <b>\(defaults\)<\/b>/);
  assert.match(html, />--stable-threshold 0\.85<\/span> <span class="flag">--sparse-steps 400</);
  assert.match(html, /<td>1150–1350<\/td>/);
  assert.match(html, /<td>150–1500<\/td>/, "the static baseline is sparse to the end");
  assert.match(html, /llvmpipe \(test fixture\)/);
  assert.doesNotMatch(html, /partial/);
});

Deno.test("the frontier of each mode is the lower-left envelope of its points", async () => {
  const grid = await readScheduleGrid(gridFile);
  const points = gridPoints(grid, (r) => r.ffn_flops_vs_dense);
  const front = frontierRows(points, [DENSE_MODE, MOE]);
  const dense = front.filter((p) => p.mode === DENSE_MODE).map((p) => p.run);
  // Dense mode: sparse (cheapest), each lower gap as cost rises (demo ties threshold-0.85:
  // the first is kept; defaults is behind sparse-250), ending at dense (1, 0).
  assert.deepEqual(dense, [
    "sparse",
    "sparse-1000",
    "threshold-0.8",
    "patience-1",
    "monitor-50",
    "threshold-0.85",
    "sparse-250",
    "dense",
  ]);
  const moe = front.filter((p) => p.mode === MOE).map((p) => p.run);
  assert.deepEqual(moe, ["sparse"], "the static baseline beats every SSD run as an MoE here");
  for (const p of points) {
    const f = front.filter((q) => q.mode === p.mode);
    assert.ok(
      f.some((q) => (q.x as number) <= p.x && (q.y as number) <= p.y),
      `${p.run} (${p.mode}) is on or behind its frontier`,
    );
  }
});

Deno.test("runReport() puts the sweep after the training plots when both are given", async () => {
  const run = await writeSyntheticRun(join(dir, "ssd"), { schedule: "ssd", steps: 300 });
  const out = join(dir, "both.html");
  const r = await runReport({ runs: [run], out, svg_dir: null, bench: [], schedules: gridFile });
  assert.deepEqual(r.plots.slice(-2), ["schedules_flops", "schedules_wall"]);
  assert.ok(r.plots.includes("loss"));
  assert.deepEqual(r.warnings, []);
  const html = await Deno.readTextFile(out);
  assert.ok(html.indexOf("<h2>Training</h2>") < html.indexOf("<h2>Schedule sweep</h2>"));
});

Deno.test("runReport() marks a partial sweep and draws what it has", async () => {
  const doc = gridFixture(false);
  doc.rows = doc.rows.slice(0, 3);
  const file = await writeGrid(join(dir, "partial.json"), doc);
  const out = join(dir, "partial.html");
  const r = await runReport({ runs: [], out, svg_dir: null, bench: [], schedules: file });
  assert.deepEqual(r.warnings, []);
  const html = await Deno.readTextFile(out);
  assert.match(html, /partial: the sweep did not finish/);
  const points = labels(layer(figures(html).get("schedules_flops")!, "symbol", 2));
  assert.equal(points.length, 3 + 2);
});

Deno.test("runReport(): a bad sweep document is one line naming the file, nothing written", async () => {
  const good = gridFixture();
  const bad = async (name: string, doc: unknown) => await writeGrid(join(dir, `${name}.json`), doc);
  const noDense = { ...good, rows: good.rows.slice(1) };
  const twice = { ...good, rows: [...good.rows, good.rows[2]] };
  const badRow = { ...good, rows: [{ ...good.rows[0], val_nats: "low" }] };
  const badEvent = {
    ...good,
    rows: [good.rows[0], { ...good.rows[1], switch_events: [{ to: "moe", step: 1 }] }],
  };
  const garbled = join(dir, "garbled.json");
  await Deno.writeTextFile(garbled, "{ rows: ");
  const cases: [string, RegExp][] = [
    [join(dir, "missing.json"), /Schedule sweep .*missing\.json not found/],
    [garbled, /garbled\.json is not valid JSON/],
    [await bad("kind", { ...good, kind: "ssd-bench" }), /kind\.json: "kind" is "ssd-bench"/],
    [await bad("version", { ...good, version: 2 }), /"version" is 2: this ssd reads version 1/],
    [await bad("norows", { ...good, rows: [] }), /"rows" is an array, expected a non-empty/],
    [await bad("nodense", noDense), /nodense\.json: no row is the dense run/],
    [await bad("twice", twice), /two rows are named "defaults"/],
    [await bad("badrow", badRow), /badrow\.json rows\[0\]: "val_nats" is "low"/],
    [await bad("badevent", badEvent), /rows\[1\]\.switch_events\[0\]: "to" is "moe"/],
  ];
  for (const [file, re] of cases) {
    const out = join(dir, "bad_out", "report.html");
    await assert.rejects(
      runReport({ runs: [], out, svg_dir: null, bench: [], schedules: file }),
      (e: Error) => {
        assert.ok(e instanceof ConfigError, `${e.name}: ${e.message}`);
        assert.match(e.message, re);
        assert.equal(e.message.split("\n").length, 1);
        return true;
      },
    );
    await assert.rejects(Deno.stat(join(dir, "bad_out")), Deno.errors.NotFound, "no output");
  }
  await assert.rejects(
    runReport({ runs: [], out: join(dir, "none.html"), svg_dir: null, bench: [] }),
    /No run folder given: .*or --schedules FILE/,
  );
});
