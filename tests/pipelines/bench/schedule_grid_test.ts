/**
 * The schedule sweep's pure parts on made-up runs: each row's gaps and
 * ratios against the dense run, the document's keys, which runs `--only`
 * selects, the grid's own checks (and that every default-grid entry is a
 * valid train config that sets exactly its keys), and the Pareto frontier.
 */
import assert from "node:assert/strict";
import {
  checkGrid,
  DENSE_ENTRY,
  gridDocument,
  type GridEntry,
  paretoFrontier,
  runFlags,
  SCHEDULE_GRID,
  scheduleRows,
  selectRuns,
  SPARSE_ENTRY,
} from "../../../pipelines/bench/schedule_grid.ts";
import { ConfigError, SsdError } from "../../../core/errors.ts";
import { resolveTrainConfig } from "../../../pipelines/train/config.ts";
import { DEFAULT_SCHEDULE_CONFIG } from "../../../pipelines/train/schedule.ts";
import { outcome, toDense, toSparse } from "../report/_grid_fixture.ts";

const near = (a: number | null, b: number, what: string) =>
  assert.ok(a !== null && Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);

Deno.test("scheduleRows() compares every run with the dense one", () => {
  const defaults: GridEntry = { name: "defaults", overrides: {}, default: true };
  const low: GridEntry = { name: "threshold-0.8", overrides: { stable_threshold: 0.8 } };
  const rows = scheduleRows([
    { entry: DENSE_ENTRY, run: outcome("dense", { nll: 2, flops: 1000, wall: 400 }) },
    {
      entry: SPARSE_ENTRY,
      run: outcome("sparse", {
        nll: 2.2,
        moe: 2.05,
        flops: 340,
        wall: 300,
        share: 0.9,
        switches: [toSparse(150, null)],
      }),
    },
    {
      entry: defaults,
      run: outcome("ssd", {
        nll: 2.02,
        moe: 2.1,
        flops: 830,
        wall: 360,
        share: 0.25,
        switches: [toSparse(1000), toDense(1350)],
      }),
    },
    // Never went sparse: no MoE evaluation.
    { entry: low, run: outcome("ssd", { nll: 1.99, flops: 1000, wall: 410 }) },
  ]);
  assert.deepEqual(rows.map((r) => r.name), ["dense", "sparse", "defaults", "threshold-0.8"]);
  assert.deepEqual(rows.map((r) => r.default), [false, false, true, false]);
  assert.deepEqual(rows.map((r) => r.schedule), ["dense", "sparse", "ssd", "ssd"]);
  const [dense, sparse, ssd, never] = rows;
  assert.equal(dense.dense_gap_pct, 0);
  assert.equal(dense.ffn_flops_vs_dense, 1);
  assert.equal(dense.wall_vs_dense, 1);
  assert.equal(dense.val_nats_moe, null);
  assert.equal(dense.moe_gap_pct, null);
  near(sparse.dense_gap_pct, 10, "sparse dense gap");
  near(sparse.moe_gap_pct, 2.5, "sparse MoE gap");
  near(sparse.ffn_flops_vs_dense, 0.34, "sparse FLOPs");
  near(sparse.wall_vs_dense, 0.75, "sparse wall");
  assert.equal(sparse.sparse_share, 0.9);
  assert.equal(sparse.top_k, 4);
  near(ssd.dense_gap_pct, 1, "ssd dense gap");
  near(ssd.moe_gap_pct, 5, "ssd MoE gap");
  near(ssd.ffn_flops_vs_dense, 0.83, "ssd FLOPs");
  near(ssd.wall_vs_dense, 0.9, "ssd wall");
  assert.equal(ssd.val_nats, 2.02);
  near(ssd.val_bpb, 2.02 / Math.LN2, "bits per byte");
  assert.equal(ssd.wall_s, 360);
  assert.equal(ssd.switches, 2);
  assert.deepEqual(ssd.switch_events.map((e) => [e.to, e.step]), [["sparse", 1000], [
    "dense",
    1350,
  ]]);
  near(never.dense_gap_pct, -0.5, "a better-than-dense run has a negative gap");
  assert.equal(never.val_nats_moe, null);
  assert.equal(never.moe_gap_pct, null);
  assert.equal(never.switches, 0);
  assert.deepEqual(never.overrides, { stable_threshold: 0.8 });
  // The row owns its copies: changing the entry later does not change the document.
  low.overrides.stable_threshold = 0.1;
  assert.deepEqual(never.overrides, { stable_threshold: 0.8 });
});

Deno.test("scheduleRows() needs a dense run and final losses", () => {
  const ssd = { entry: SCHEDULE_GRID[0], run: outcome("ssd", { nll: 2, flops: 1, wall: 1 }) };
  assert.throws(
    () => scheduleRows([ssd]),
    (e: Error) => e instanceof SsdError && /dense run/.test(e.message),
  );
  const dense = { entry: DENSE_ENTRY, run: outcome("dense", { nll: 2, flops: 1, wall: 1 }) };
  const cut = { ...ssd, run: { ...ssd.run, val: null } };
  assert.throws(
    () => scheduleRows([dense, cut]),
    (e: Error) =>
      e instanceof SsdError && /"defaults" has no final validation loss/.test(e.message),
  );
});

Deno.test("gridDocument() has the contract's keys in order and drops the run folder", () => {
  const rows = scheduleRows([
    { entry: DENSE_ENTRY, run: outcome("dense", { nll: 2, flops: 1, wall: 1 }) },
  ]);
  const doc = gridDocument({
    ssd_version: "0.1.0",
    command: "deno run -A tests/bench/schedules_bench.ts --grid",
    date: "2025-01-01T00:00:00.000Z",
    adapter: "llvmpipe",
    complete: false,
    config: { steps: 1500, out: "/tmp/ssd-schedules-x/00-dense", schedule: "dense" },
    rows,
  });
  assert.deepEqual(Object.keys(doc), [
    "kind",
    "version",
    "ssd_version",
    "command",
    "date",
    "adapter",
    "complete",
    "config",
    "rows",
  ]);
  assert.equal(doc.kind, "ssd-schedule-grid");
  assert.equal(doc.version, 1);
  assert.deepEqual(doc.config, { steps: 1500, schedule: "dense" });
  assert.deepEqual(Object.keys(doc.rows[0]), [
    "name",
    "schedule",
    "overrides",
    "default",
    "val_nats",
    "val_bpb",
    "val_nats_moe",
    "val_bpb_moe",
    "top_k",
    "dense_gap_pct",
    "moe_gap_pct",
    "ffn_flops",
    "ffn_flops_vs_dense",
    "wall_s",
    "wall_vs_dense",
    "sparse_share",
    "switches",
    "switch_events",
  ]);
});

Deno.test("selectRuns(): dense first and always, --only keeps the named runs in grid order", () => {
  const all = selectRuns(null).map((e) => e.name);
  assert.deepEqual(all, ["dense", "sparse", ...SCHEDULE_GRID.map((e) => e.name)]);
  assert.deepEqual(selectRuns(["rule-plateau", "defaults"]).map((e) => e.name), [
    "dense",
    "defaults",
    "rule-plateau",
  ]);
  assert.deepEqual(selectRuns(["sparse", "dense"]).map((e) => e.name), ["dense", "sparse"]);
  assert.deepEqual(selectRuns([]).map((e) => e.name), ["dense"]);
  assert.throws(
    () => selectRuns(["defaults", "nope"]),
    (e: Error) =>
      e instanceof ConfigError && /no schedule named "nope": choose from dense, sparse, defaults/
        .test(e.message),
  );
});

Deno.test("checkGrid() refuses duplicate or unusable names and a default with overrides", () => {
  const bad: [GridEntry[], RegExp][] = [
    [[{ name: "a", overrides: {} }, { name: "a", overrides: {} }], /"a" is used twice/],
    [[{ name: "dense", overrides: {} }], /"dense" is used twice/],
    [[{ name: "a/b", overrides: {} }], /name "a\/b" must be/],
    [[{ name: "", overrides: {} }], /name "" must be/],
    [[{ name: "d", overrides: { patience: 1 }, default: true }], /must override nothing/],
    [
      [{ name: "d", overrides: {}, default: true }, { name: "e", overrides: {}, default: true }],
      /more than one/,
    ],
  ];
  for (const [grid, re] of bad) {
    assert.throws(
      () => checkGrid(grid),
      (e: Error) => e instanceof ConfigError && re.test(e.message),
    );
  }
  checkGrid(SCHEDULE_GRID);
});

Deno.test("the default grid: one defaults entry, and each entry resolves to exactly its keys", async () => {
  assert.deepEqual(SCHEDULE_GRID.filter((e) => e.default).map((e) => e.name), ["defaults"]);
  const shared = { steps: 1500, val_tokens: 65536, eval_every: 0, save_every: 0 };
  const base = await resolveTrainConfig({ ...shared, schedule: "ssd" });
  for (const entry of SCHEDULE_GRID) {
    for (const key of Object.keys(entry.overrides)) {
      assert.ok(key in DEFAULT_SCHEDULE_CONFIG, `${entry.name}: ${key} is a schedule key`);
    }
    const c = await resolveTrainConfig(runFlags(entry, shared));
    const differs = Object.keys(c).filter((k) =>
      (c as unknown as Record<string, unknown>)[k] !==
        (base as unknown as Record<string, unknown>)[k]
    );
    assert.deepEqual(differs.sort(), Object.keys(entry.overrides).sort(), entry.name);
    assert.equal(c.schedule, "ssd");
  }
  // The reference entries set their own schedule over the shared flags.
  assert.equal((await resolveTrainConfig(runFlags(DENSE_ENTRY, shared))).schedule, "dense");
  assert.equal((await resolveTrainConfig(runFlags(SPARSE_ENTRY, shared))).schedule, "sparse");
  // An entry wins over a shared flag of the same key.
  const low = SCHEDULE_GRID.find((e) => e.name === "rule-threshold-0.8")!;
  assert.equal(runFlags(low, { ...shared, stable_threshold: 0.5 }).stable_threshold, 0.8);
});

Deno.test("paretoFrontier() keeps the lower-left envelope in x order", () => {
  type P = { id: string; x: number; y: number };
  const pts: P[] = [
    { id: "dense", x: 1, y: 0 },
    { id: "a", x: 0.4, y: 8 },
    { id: "b", x: 0.8, y: 1 },
    { id: "dominated", x: 0.9, y: 2 },
    { id: "c", x: 0.6, y: 3 },
    { id: "same-x-worse", x: 0.6, y: 4 },
    { id: "worse-than-dense", x: 1.1, y: 0 },
    { id: "b-twin", x: 0.8, y: 1 },
    { id: "nan", x: NaN, y: -5 },
    { id: "inf", x: 0.1, y: Infinity },
  ];
  const front = paretoFrontier(pts, (p) => p.x, (p) => p.y);
  assert.deepEqual(front.map((p) => p.id), ["a", "c", "b", "dense"]);
  // Every point left out is beaten (or equalled) on both axes by one on the frontier.
  for (const p of pts.filter((p) => !front.includes(p) && Number.isFinite(p.x + p.y))) {
    assert.ok(front.some((f) => f.x <= p.x && f.y <= p.y), p.id);
  }
  assert.deepEqual(paretoFrontier([], (p: P) => p.x, (p) => p.y), []);
  const one = [{ id: "x", x: 2, y: 2 }];
  assert.deepEqual(paretoFrontier(one, (p) => p.x, (p) => p.y), one);
  // A point better on both axes leaves only itself.
  const best = { id: "best", x: 0.1, y: -1 };
  assert.deepEqual(paretoFrontier([...pts, best], (p) => p.x, (p) => p.y), [best]);
});
