/**
 * A schedule sweep document for the tests, made by the sweep's own row and
 * document builders (pipelines/bench/schedule_grid.ts) from made-up runs:
 * dense, the static baseline and every entry of the default grid, one of
 * which never went sparse (no MoE point).
 */
import {
  DENSE_ENTRY,
  gridDocument,
  type GridEntry,
  type RunOutcome,
  type ScheduleGridDoc,
  scheduleRows,
  SPARSE_ENTRY,
} from "../../../pipelines/bench/schedule_grid.ts";
import type { SwitchEvent } from "../../../pipelines/train/schedule.ts";

/** Final numbers of a made-up run. */
export interface Outcome {
  /** Dense-mode validation loss, nats. */
  nll: number;
  /** MoE-mode validation loss; missing: the run never went sparse. */
  moe?: number;
  /** FFN FLOPs. */
  flops: number;
  /** Wall time, s. */
  wall: number;
  /** Share of sparse steps. */
  share?: number;
  /** Switch events. */
  switches?: SwitchEvent[];
}

/** A finished run with these final numbers, as `scheduleRow` reads it. */
export function outcome(schedule: string, o: Outcome): RunOutcome {
  return {
    config: { schedule },
    val: { nll: o.nll, bpb: o.nll / Math.LN2 },
    val_moe: o.moe === undefined ? null : { nll: o.moe, bpb: o.moe / Math.LN2, k: 4 },
    accounting: { ffn_flops: o.flops, wall_s: o.wall, sparse: { share: o.share ?? 0 } },
    switches: o.switches ?? [],
  };
}

/** A switch to sparse at `step`. */
export const toSparse = (step: number, similarity: number | null = 0.93): SwitchEvent => ({
  event: "switch",
  from: "dense",
  to: "sparse",
  step,
  similarity,
  reason: similarity === null ? "static" : "stable",
});

/** A switch back to dense at `step`. */
export const toDense = (step: number): SwitchEvent => ({
  event: "switch",
  from: "sparse",
  to: "dense",
  step,
  similarity: null,
  reason: "length",
});

/** An SSD run with one sparse phase `[from, to)` of a 1500-step run. */
function ssd(nll: number, moe: number, from: number, to: number): Outcome {
  const share = (to - from) / 1500;
  return {
    nll,
    moe,
    flops: 1000 * (1 - 0.72 * share),
    wall: 448 * (1 - 0.27 * share),
    share,
    switches: [toSparse(from), toDense(to)],
  };
}

/** The made-up outcome of each run, by name. */
export const OUTCOMES: Record<string, [string, Outcome]> = {
  dense: ["dense", { nll: 1.9729, flops: 1000, wall: 448 }],
  sparse: ["sparse", {
    nll: 2.1446,
    moe: 1.9963,
    flops: 340,
    wall: 364,
    share: 0.9,
    switches: [toSparse(150, null)],
  }],
  "defaults": ["ssd", ssd(1.9850, 2.0300, 1150, 1350)],
  "threshold-0.8": ["ssd", ssd(2.0100, 2.0400, 700, 1350)],
  "threshold-0.85": ["ssd", ssd(1.9971, 2.0481, 1000, 1350)],
  "patience-1": ["ssd", ssd(2.0050, 2.0350, 800, 1350)],
  "sparse-250": ["ssd", ssd(1.9800, 2.0600, 1000, 1250)],
  "sparse-1000": ["ssd", ssd(2.0200, 2.0100, 600, 1350)],
  "monitor-50": ["ssd", ssd(1.9990, 2.0450, 950, 1350)],
  // Never switched: a dense run with monitor overhead, and no MoE evaluation.
  "final-dense-0": ["ssd", { nll: 1.9735, flops: 1000, wall: 455 }],
  "demo": ["ssd", ssd(1.9971, 2.0481, 1000, 1350)],
};

/** The grid the fixture was "trained" with (its own, so the live grid can change). */
export const FIXTURE_GRID: readonly GridEntry[] = [
  { name: "defaults", overrides: {}, default: true },
  { name: "threshold-0.8", overrides: { stable_threshold: 0.8 } },
  { name: "threshold-0.85", overrides: { stable_threshold: 0.85 } },
  { name: "patience-1", overrides: { patience: 1 } },
  { name: "sparse-250", overrides: { sparse_steps: 250 } },
  { name: "sparse-1000", overrides: { sparse_steps: 1000 } },
  { name: "monitor-50", overrides: { monitor_every: 50 } },
  { name: "final-dense-0", overrides: { final_dense: 0 } },
  { name: "demo", overrides: { stable_threshold: 0.85, sparse_steps: 400 } },
];

/** The sweep document of `OUTCOMES`, as `bench:schedules --grid` writes it. */
export function gridFixture(complete = true): ScheduleGridDoc {
  const entries = [DENSE_ENTRY, SPARSE_ENTRY, ...FIXTURE_GRID];
  const runs = entries.map((entry) => {
    const [schedule, o] = OUTCOMES[entry.name];
    return { entry, run: outcome(schedule, o) };
  });
  return gridDocument({
    ssd_version: "0.1.0",
    command: "deno run -A tests/bench/schedules_bench.ts --grid",
    date: "2025-01-01T00:00:00.000Z",
    adapter: "llvmpipe (test fixture)",
    complete,
    config: { steps: 1500, d_model: 128, n_layer: 3, d_ff: 512, seed: 1337, out: "/tmp/x" },
    rows: scheduleRows(runs),
  });
}

/** Writes `doc` (default: `gridFixture()`) to `path`; returns it. */
export async function writeGrid(path: string, doc: unknown = gridFixture()): Promise<string> {
  await Deno.writeTextFile(path, JSON.stringify(doc, null, 2) + "\n");
  return path;
}
