/**
 * The schedule sweep of `deno task bench:schedules --grid`: the named grid
 * of SSD schedules, the comparison row of each trained run, the JSON
 * document the sweep writes (and `ssd report --schedules` draws), and the
 * Pareto frontier of the rows. No GPU, no I/O: the bench script trains and
 * writes, this module only decides what to train and what the numbers are.
 *
 * A grid entry is a plain object of train-config overrides (snake_case, as
 * `ssd train`'s flags), laid over the sweep's shared flags and
 * `--schedule ssd` and given to `resolveTrainConfig` as is: a key the
 * schedule learns later needs only a new entry here, no code. The entry
 * marked `default` has no overrides at all, so it is the run `ssd train
 * --schedule ssd` makes with the sweep's shared flags.
 *
 * Document contract (keys in this order): `kind` ("ssd-schedule-grid"),
 * `version` (1), `ssd_version`, `command`, `date` (ISO 8601), `adapter`
 * (null when unknown), `complete` (false while a sweep is running or after
 * an interrupted one), `config` (the dense run's resolved train config,
 * without its temporary `out`), `rows` (one `ScheduleRow` per finished run,
 * dense first; the gaps and ratios are against that dense run).
 */
import { ConfigError, SsdError } from "../../core/errors.ts";
import type { SwitchEvent } from "../train/schedule.ts";

/** One schedule of the sweep: a name and the train-config keys it sets. */
export interface GridEntry {
  /** Row name, also what `--only` selects (letters, digits, `.`, `_`, `=`, `-`). */
  name: string;
  /** Train-config overrides (snake_case keys), laid over the shared flags. */
  overrides: Record<string, unknown>;
  /** The schedule's defaults: no overrides, the point the report labels. */
  default?: boolean;
}

/** The dense reference run: every gap and ratio is against it; always trained, first. */
export const DENSE_ENTRY: Readonly<GridEntry> = Object.freeze({
  name: "dense",
  overrides: { schedule: "dense" },
});

/** The static baseline: MoE-fied once at `--sparse-from`, sparse to the end. */
export const SPARSE_ENTRY: Readonly<GridEntry> = Object.freeze({
  name: "sparse",
  overrides: { schedule: "sparse" },
});

/**
 * The SSD schedules of the default sweep. Each varies one knob of the
 * defaults (the guard rule at 2%, every 4th sparse step dense, sparse
 * phases of at most 500 steps, a mixed tail of 10%): the switch rule (each
 * with its default threshold, and the first rule at a lower one), the
 * guard's tolerance, the interleaved dense steps, the phase length, and the
 * ending.
 */
export const SCHEDULE_GRID: readonly GridEntry[] = Object.freeze([
  { name: "defaults", overrides: {}, default: true },
  { name: "rule-threshold", overrides: { switch_rule: "threshold" } },
  { name: "rule-threshold-0.8", overrides: { switch_rule: "threshold", stable_threshold: 0.8 } },
  { name: "rule-plateau", overrides: { switch_rule: "plateau" } },
  { name: "rule-overlap", overrides: { switch_rule: "overlap" } },
  { name: "rule-coverage", overrides: { switch_rule: "coverage" } },
  { name: "guard-0.01", overrides: { guard_tolerance: 0.01 } },
  { name: "guard-0.04", overrides: { guard_tolerance: 0.04 } },
  { name: "dense-every-0", overrides: { dense_every: 0 } },
  { name: "dense-every-8", overrides: { dense_every: 8 } },
  { name: "sparse-250", overrides: { sparse_steps: 250 } },
  { name: "sparse-1000", overrides: { sparse_steps: 1000 } },
  { name: "ending-dense", overrides: { ending: "dense" } },
  { name: "ending-refit", overrides: { ending: "refit" } },
  { name: "ending-sparse", overrides: { ending: "sparse" } },
]);

/**
 * Checks a grid: names unique, usable as folder names and distinct from
 * the reference runs; at most one default, and that one without overrides.
 *
 * @throws ConfigError naming the bad entry
 */
export function checkGrid(grid: readonly GridEntry[]): void {
  const seen = new Set([DENSE_ENTRY.name, SPARSE_ENTRY.name]);
  for (const e of grid) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._=-]*$/.test(e.name)) {
      throw new ConfigError(
        `Grid entry name "${e.name}" must be letters, digits, ".", "_", "=" or "-"`,
      );
    }
    if (seen.has(e.name)) throw new ConfigError(`Grid entry name "${e.name}" is used twice`);
    seen.add(e.name);
    if (e.default && Object.keys(e.overrides).length > 0) {
      throw new ConfigError(`Grid entry "${e.name}" is the default, so it must override nothing`);
    }
  }
  if (grid.filter((e) => e.default).length > 1) {
    throw new ConfigError("The grid marks more than one entry as the default");
  }
}

/**
 * The runs of a sweep, in training order: dense first (the reference, even
 * when `only` leaves it out), then the static baseline and the grid.
 *
 * @param only names to keep (`dense`, `sparse` or grid names); null: all
 * @throws ConfigError for a name that is neither, listing the names
 */
export function selectRuns(
  only: readonly string[] | null,
  grid: readonly GridEntry[] = SCHEDULE_GRID,
): GridEntry[] {
  checkGrid(grid);
  const all = [SPARSE_ENTRY, ...grid];
  if (only === null) return [DENSE_ENTRY, ...all];
  const names = [DENSE_ENTRY, ...all].map((e) => e.name);
  const unknown = only.filter((n) => !names.includes(n));
  if (unknown.length > 0) {
    throw new ConfigError(
      `--only: no schedule named ${unknown.map((n) => `"${n}"`).join(", ")}: ` +
        `choose from ${names.join(", ")}`,
    );
  }
  return [DENSE_ENTRY, ...all.filter((e) => only.includes(e.name))];
}

/**
 * The train-config flags of one run: the shared flags, then `--schedule
 * ssd`, then the entry's own keys (which win over a shared flag of the same
 * key; the reference entries set their own schedule).
 */
export function runFlags(
  entry: GridEntry,
  shared: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  return { ...shared, schedule: "ssd", ...entry.overrides };
}

/** What a row needs of a finished run (a `TrainSummary` has it all). */
export interface RunOutcome {
  /** The resolved config (only the schedule is read). */
  config: { schedule: string };
  /** Final validation of the dense model; null for an interrupted run. */
  val: { nll: number; bpb: number } | null;
  /** Final validation as an MoE at the trained top-k; null if the run never went sparse. */
  val_moe: { nll: number; bpb: number; k: number } | null;
  /** FFN FLOPs and wall time of the whole run, and the share of sparse steps. */
  accounting: { ffn_flops: number; wall_s: number; sparse: { share: number } };
  /** Switch events of the run. */
  switches: SwitchEvent[];
}

/** One run of a sweep, compared with the dense run. */
export interface ScheduleRow {
  /** The entry's name. */
  name: string;
  /** The schedule it ran (`ssd`, `sparse` or `dense`). */
  schedule: string;
  /** The entry's overrides, as given. */
  overrides: Record<string, unknown>;
  /** Whether this is the defaults entry. */
  default: boolean;
  /** Final validation loss of the dense model, nats per token. */
  val_nats: number;
  /** The same in bits per byte. */
  val_bpb: number;
  /** Final validation loss as an MoE at the trained top-k; null for dense or a run that never went sparse. */
  val_nats_moe: number | null;
  /** The same in bits per byte. */
  val_bpb_moe: number | null;
  /** The top-k of that MoE evaluation. */
  top_k: number | null;
  /** val_nats against the dense run's, in percent (dense: 0). */
  dense_gap_pct: number;
  /** val_nats_moe against the dense run's val_nats, in percent. */
  moe_gap_pct: number | null;
  /** FFN FLOPs of the whole run (forward and backward). */
  ffn_flops: number;
  /** ffn_flops over the dense run's. */
  ffn_flops_vs_dense: number;
  /** Wall time of the run's steps and overheads, seconds. */
  wall_s: number;
  /** wall_s over the dense run's. */
  wall_vs_dense: number;
  /** Share of the steps that ran sparse. */
  sparse_share: number;
  /** Number of switch events. */
  switches: number;
  /** The switch events. */
  switch_events: SwitchEvent[];
}

function finalVal(name: string, run: RunOutcome): { nll: number; bpb: number } {
  if (run.val === null) {
    throw new SsdError(`Run "${name}" has no final validation loss (it was interrupted)`);
  }
  return run.val;
}

/**
 * The row of one run against the dense reference run.
 *
 * @throws SsdError when either run has no final validation loss
 */
export function scheduleRow(entry: GridEntry, run: RunOutcome, dense: RunOutcome): ScheduleRow {
  const val = finalVal(entry.name, run);
  const ref = finalVal(DENSE_ENTRY.name, dense);
  const gap = (nll: number) => (100 * (nll - ref.nll)) / ref.nll;
  return {
    name: entry.name,
    schedule: run.config.schedule,
    overrides: { ...entry.overrides },
    default: entry.default ?? false,
    val_nats: val.nll,
    val_bpb: val.bpb,
    val_nats_moe: run.val_moe?.nll ?? null,
    val_bpb_moe: run.val_moe?.bpb ?? null,
    top_k: run.val_moe?.k ?? null,
    dense_gap_pct: gap(val.nll),
    moe_gap_pct: run.val_moe ? gap(run.val_moe.nll) : null,
    ffn_flops: run.accounting.ffn_flops,
    ffn_flops_vs_dense: run.accounting.ffn_flops / dense.accounting.ffn_flops,
    wall_s: run.accounting.wall_s,
    wall_vs_dense: run.accounting.wall_s / dense.accounting.wall_s,
    sparse_share: run.accounting.sparse.share,
    switches: run.switches.length,
    switch_events: run.switches.map((e) => ({ ...e })),
  };
}

/**
 * The rows of a sweep, in run order, against its dense run (the first run
 * whose config is `--schedule dense`).
 *
 * @throws SsdError when there is no dense run or a run has no final loss
 */
export function scheduleRows(
  runs: readonly { entry: GridEntry; run: RunOutcome }[],
): ScheduleRow[] {
  const dense = runs.find((r) => r.run.config.schedule === "dense");
  if (!dense) throw new SsdError("A schedule comparison needs a dense run as its reference");
  return runs.map((r) => scheduleRow(r.entry, r.run, dense.run));
}

/** The sweep document (see the module comment). */
export interface ScheduleGridDoc {
  /** Always "ssd-schedule-grid". */
  kind: "ssd-schedule-grid";
  /** Format version, 1. */
  version: 1;
  /** Version of ssd that ran the sweep. */
  ssd_version: string;
  /** The command line of the sweep. */
  command: string;
  /** When the sweep started, ISO 8601. */
  date: string;
  /** The WebGPU adapter's name; null when unknown. */
  adapter: string | null;
  /** Whether every planned run finished. */
  complete: boolean;
  /** The dense run's resolved train config, without `out`. */
  config: Record<string, unknown>;
  /** One row per finished run, dense first. */
  rows: ScheduleRow[];
}

/** The document's kind. */
export const GRID_KIND = "ssd-schedule-grid";
/** The document's format version. */
export const GRID_VERSION = 1;

/** Builds the sweep document, keys in contract order (`out` dropped from the config). */
export function gridDocument(d: Omit<ScheduleGridDoc, "kind" | "version">): ScheduleGridDoc {
  const { out: _out, ...config } = d.config;
  return {
    kind: GRID_KIND,
    version: GRID_VERSION,
    ssd_version: d.ssd_version,
    command: d.command,
    date: d.date,
    adapter: d.adapter,
    complete: d.complete,
    config,
    rows: d.rows,
  };
}

/**
 * The Pareto frontier (lower-left envelope) of `items`: those no other item
 * beats on both x and y (lower is better on both), by x ascending, y then
 * strictly descending. Of equal points the first is kept; items with a
 * non-finite coordinate are left out.
 */
export function paretoFrontier<T>(
  items: readonly T[],
  x: (item: T) => number,
  y: (item: T) => number,
): T[] {
  const finite = items.filter((t) => Number.isFinite(x(t)) && Number.isFinite(y(t)));
  // Stable sort: among equal points the earlier item comes first and is the one kept.
  const sorted = [...finite].sort((a, b) => x(a) - x(b) || y(a) - y(b));
  const front: T[] = [];
  for (const t of sorted) {
    if (front.length === 0 || y(t) < y(front[front.length - 1])) front.push(t);
  }
  return front;
}
