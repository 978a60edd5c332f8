/**
 * The schedule sweep document of `ssd report --schedules`: read and checked
 * field by field against the format `pipelines/bench/schedule_grid.ts`
 * writes. Only what the page draws is required of a row; the rest may be
 * missing (a hand-written or trimmed file) and reads as null.
 */
import { basename } from "node:path";
import { ConfigError } from "../../core/errors.ts";
import { GRID_KIND, GRID_VERSION } from "../bench/schedule_grid.ts";
import { Fields, type Json, show } from "../json_fields.ts";

/** A switch event as read back. */
export interface SwitchRead {
  /** Phase after the switch. */
  to: "dense" | "sparse";
  /** Steps done when it applies. */
  step: number;
}

/** One row of the sweep as read back. */
export interface ScheduleRowRead {
  /** The run's name. */
  name: string;
  /** The schedule it ran. */
  schedule: "dense" | "sparse" | "ssd";
  /** The train-config keys its entry set. */
  overrides: Json;
  /** Whether it is the defaults entry. */
  default: boolean;
  /** Final validation loss of the dense model, nats per token. */
  val_nats: number;
  /** Final validation loss as an MoE; null when it was not evaluated so. */
  val_nats_moe: number | null;
  /** Top-k of that MoE evaluation, null when unknown. */
  top_k: number | null;
  /** Dense-mode gap to the dense run, percent. */
  dense_gap_pct: number;
  /** MoE-mode gap to the dense run's dense loss, percent. */
  moe_gap_pct: number | null;
  /** FFN FLOPs over the dense run's. */
  ffn_flops_vs_dense: number;
  /** Wall time over the dense run's. */
  wall_vs_dense: number;
  /** Wall time, seconds; null when missing. */
  wall_s: number | null;
  /** Share of sparse steps; null when missing. */
  sparse_share: number | null;
  /** Switch events (an empty list when missing). */
  switch_events: SwitchRead[];
  /** Number of switches (the events' count when missing). */
  switches: number;
}

/** A sweep document, read and checked. */
export interface ScheduleGridData {
  /** The file as given. */
  file: string;
  /** Its name, for the page. */
  label: string;
  /** The sweep's command line, null when missing. */
  command: string | null;
  /** When it ran, null when missing. */
  date: string | null;
  /** The adapter, null when missing. */
  adapter: string | null;
  /** Version of ssd that wrote it, null when missing. */
  ssd_version: string | null;
  /** False for a partial sweep. */
  complete: boolean;
  /** The dense run's train config (an empty object when missing). */
  config: Json;
  /** Rows in file order; one of them is the dense run. */
  rows: ScheduleRowRead[];
}

function text(f: Fields, o: Json, key: string, required = false): string | null {
  const v = o[key];
  if ((v === undefined || v === null) && !required) return null;
  if (typeof v !== "string" || v === "") {
    f.fail(v === undefined ? `"${key}" is missing` : `"${key}" is ${show(v)}, expected a string`);
  }
  return v;
}

function flag(f: Fields, o: Json, key: string): boolean {
  const v = o[key] ?? false;
  if (typeof v !== "boolean") f.fail(`"${key}" is ${show(v)}, expected true or false`);
  return v;
}

function readEvents(f: Fields, o: Json): SwitchRead[] {
  if (o.switch_events === undefined || o.switch_events === null) return [];
  if (!Array.isArray(o.switch_events)) {
    f.fail(`"switch_events" is ${show(o.switch_events)}, expected an array`);
  }
  return (o.switch_events as unknown[]).map((raw, j) => {
    const g = new Fields(`${f.where}.switch_events[${j}]`);
    const e = g.object(raw, "the event");
    return {
      to: g.oneOf(e, "to", ["dense", "sparse"] as const),
      step: g.int(e, "step", { required: true })!,
    };
  });
}

function readRow(raw: unknown, where: string): ScheduleRowRead {
  const f = new Fields(where);
  const o = f.object(raw, "the row");
  const events = readEvents(f, o);
  return {
    name: text(f, o, "name", true)!,
    schedule: f.oneOf(o, "schedule", ["dense", "sparse", "ssd"] as const),
    overrides: o.overrides === undefined ? {} : f.object(o.overrides, `"overrides"`),
    default: flag(f, o, "default"),
    val_nats: f.num(o, "val_nats", { required: true })!,
    val_nats_moe: f.num(o, "val_nats_moe", { nullable: true }),
    top_k: f.int(o, "top_k", { nullable: true }),
    dense_gap_pct: f.num(o, "dense_gap_pct", { required: true })!,
    moe_gap_pct: f.num(o, "moe_gap_pct", { nullable: true }),
    ffn_flops_vs_dense: f.num(o, "ffn_flops_vs_dense", { required: true })!,
    wall_vs_dense: f.num(o, "wall_vs_dense", { required: true })!,
    wall_s: f.num(o, "wall_s", { nullable: true }),
    sparse_share: f.num(o, "sparse_share", { nullable: true }),
    switch_events: events,
    switches: f.int(o, "switches", { nullable: true }) ?? events.length,
  };
}

/**
 * Reads a sweep document written by `deno task bench:schedules --grid`.
 *
 * @param file the JSON file
 * @throws ConfigError naming the file and the bad field
 */
export async function readScheduleGrid(file: string): Promise<ScheduleGridData> {
  const what = `Schedule sweep ${file}`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(await Deno.readTextFile(file));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new ConfigError(`${what} not found: give a file written by bench:schedules --grid`);
    }
    throw new ConfigError(
      `${what} is not valid JSON (${(e as Error).message.split("\n")[0]}): ` +
        `give a file written by bench:schedules --grid`,
    );
  }
  const f = new Fields(what);
  const top = f.object(parsed, "the document");
  if (top.kind !== GRID_KIND) {
    f.fail(`"kind" is ${show(top.kind)}, expected "${GRID_KIND}"`);
  }
  if (top.version !== GRID_VERSION) {
    f.fail(`"version" is ${show(top.version)}: this ssd reads version ${GRID_VERSION}`);
  }
  if (!Array.isArray(top.rows) || top.rows.length === 0) {
    f.fail(`"rows" is ${show(top.rows)}, expected a non-empty array of runs`);
  }
  const rows = (top.rows as unknown[]).map((raw, i) => readRow(raw, `${what} rows[${i}]`));
  const names = rows.map((r) => r.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice !== undefined) f.fail(`two rows are named "${twice}"`);
  if (!rows.some((r) => r.schedule === "dense")) {
    f.fail("no row is the dense run: the gaps are measured against it");
  }
  return {
    file,
    label: basename(file),
    command: text(f, top, "command"),
    date: text(f, top, "date"),
    adapter: text(f, top, "adapter"),
    ssd_version: text(f, top, "ssd_version"),
    complete: top.complete === undefined ? true : flag(f, top, "complete"),
    config: top.config === undefined || top.config === null ? {} : f.object(top.config, `"config"`),
    rows,
  };
}
