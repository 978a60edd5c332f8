/**
 * Reading the runs of `ssd report`: a folder written by `ssd train` holds
 * `metrics.jsonl` (one object per training step, switch events, a final line)
 * and checkpoints whose `ssd.train` metadata has the config (schedule,
 * switch threshold) and per-phase totals; only the newest checkpoint's
 * header is read. Every line and field the report uses is checked here, so
 * bad input fails with one message naming the file and line before anything
 * is rendered or written. Per-run totals for the summary table come last.
 */
import { basename, join, resolve } from "node:path";
import { META_TRAIN, metaJson, readHeader } from "../../core/checkpoint.ts";
import { ConfigError } from "../../core/errors.ts";
import { Fields, type Json, show } from "../json_fields.ts";
import { uniqueNames } from "./_util.ts";
import { type AccountingState, summarizeAccounting } from "../train/accounting.ts";
import {
  type FinalMetrics,
  METRICS_FILE,
  parseMetricsText,
  type StepMetrics,
} from "../train/metrics.ts";
import { newestRunCheckpoint } from "../train/run_folder.ts";
import {
  type Phase,
  SWITCH_REASONS,
  type SwitchEvent,
  type SwitchReason,
} from "../train/schedule.ts";

export type { Phase };
export { METRICS_FILE };

/** Every key of `T`, present, with null where the run wrote none. */
type Present<T> = { [K in keyof T]-?: Exclude<T[K], undefined> | null };

/**
 * One training step of `metrics.jsonl` as the report uses it: the writer's
 * `StepMetrics`, with null for what a line does not carry (a non-finite loss,
 * no evaluation on this step).
 */
export type StepRecord =
  & Pick<StepMetrics, "step" | "phase">
  & Present<
    Pick<
      StepMetrics,
      | "loss"
      | "val_loss"
      | "tokens_per_s"
      | "ms_per_step"
      | "ffn_flops"
      | "ffn_flops_dense"
      | "similarity"
    >
  >
  & { act_ratio: (number | null)[] | null };

/** A switch event of `metrics.jsonl`, without its `event` tag. */
export type SwitchRecord = Omit<SwitchEvent, "event" | "reason"> & {
  /** Why it switched (null in metrics written before reasons were logged). */
  reason: SwitchReason | null;
};

/** The last line of a finished run (`"final": true`), with null for what it lacks. */
export type FinalRecord =
  & Pick<FinalMetrics, "step" | "val_loss">
  & Present<Pick<FinalMetrics, "val_bpb" | "val_loss_moe" | "top_k">>;

/** What the newest checkpoint of a run says about its training. */
export interface RunCheckpointInfo {
  /** The checkpoint read. */
  path: string;
  /** `--schedule` of the run. */
  schedule: string | null;
  /** `--stable-threshold` of the run. */
  stable_threshold: number | null;
  /** `--steps` the run was configured for. */
  planned_steps: number | null;
  /** Totals per phase, when the checkpoint carries them. */
  accounting: AccountingState | null;
}

/** One run folder, read and checked. */
export interface RunData {
  /** The folder as given. */
  dir: string;
  /** Legend label, unique among the report's runs. */
  label: string;
  /** Schedule from the checkpoint, or inferred from the phases. */
  schedule: string;
  /** Training steps in step order. */
  steps: StepRecord[];
  /** Phase switches in file order. */
  switches: SwitchRecord[];
  /** Final evaluation (null for an unfinished run). */
  final: FinalRecord | null;
  /** Checkpoint metadata (null when the folder holds no checkpoint). */
  checkpoint: RunCheckpointInfo | null;
  /** Line number of an incomplete last line that was left out (a live or killed run). */
  partial_line?: number;
}

const PHASES: readonly Phase[] = ["dense", "sparse"];

/**
 * Parses the text of a `metrics.jsonl` with the writer's reader. A complete
 * line that is not a JSON object is an error; unknown keys and unknown
 * `event` lines are skipped so that newer files still read. A last line with
 * no newline is one the trainer is still writing (or was killed writing): it
 * is left out and its number returned as `partial_line`.
 *
 * @param text the file's contents
 * @param path the file, for messages
 * @returns steps sorted by step, switch events and the final record
 * @throws ConfigError naming the file and line of the first bad line
 */
export function parseMetrics(
  text: string,
  path: string,
): {
  steps: StepRecord[];
  switches: SwitchRecord[];
  final: FinalRecord | null;
  partial_line?: number;
} {
  const file = parseMetricsText(text);
  if (file.bad.length > 0) {
    const n = file.bad[0];
    new Fields(`${path} line ${n}`).fail(badLine(text.split("\n")[n - 1]));
  }
  // A last line with no newline that parses is complete but for its newline.
  const tail = file.partial === null ? null : parsedObject(file.partial);
  if (tail) {
    file.lines.push(tail);
    file.numbers.push(text.split("\n").length);
  }
  const steps: StepRecord[] = [];
  const switches: SwitchRecord[] = [];
  let final: FinalRecord | null = null;
  file.lines.forEach((o, i) => {
    const f = new Fields(`${path} line ${file.numbers[i]}`);
    if ("event" in o) {
      if (o.event === "switch") switches.push(switchRecord(f, o));
    } else if (o.final === true) final = finalRecord(f, o);
    else steps.push(stepRecord(f, o));
  });
  if (steps.length === 0) {
    throw new ConfigError(`${path} holds no training steps: is the run still starting?`);
  }
  steps.sort((a, b) => a.step - b.step);
  const partial = file.partial === null || tail ? undefined : text.split("\n").length;
  return partial === undefined ? { steps, switches, final } : {
    steps,
    switches,
    final,
    partial_line: partial,
  };
}

/** Why a complete line of metrics.jsonl is not one JSON object. */
function badLine(line: string): string {
  if (line.trim() === "") return "the line is empty (expected one JSON object per line)";
  try {
    JSON.parse(line);
  } catch (e) {
    return `not valid JSON (${(e as Error).message.split("\n")[0]})`;
  }
  return `the line is ${show(JSON.parse(line))}, expected a JSON object`;
}

function parsedObject(line: string): Json | null {
  try {
    const o = JSON.parse(line);
    return o !== null && typeof o === "object" && !Array.isArray(o) ? o : null;
  } catch {
    return null;
  }
}

function switchRecord(f: Fields, o: Json): SwitchRecord {
  return {
    step: f.int(o, "step", { required: true })!,
    from: f.oneOf(o, "from", PHASES),
    to: f.oneOf(o, "to", PHASES),
    similarity: f.num(o, "similarity", { nullable: true }),
    reason: o.reason === undefined ? null : f.oneOf(o, "reason", SWITCH_REASONS),
  };
}

function finalRecord(f: Fields, o: Json): FinalRecord {
  const step = f.int(o, "step", { required: true })!;
  f.oneOf(o, "phase", PHASES);
  return {
    step,
    val_loss: f.num(o, "val_loss", { required: true })!,
    val_bpb: f.num(o, "val_bpb", { nullable: true }),
    val_loss_moe: f.num(o, "val_loss_moe", { nullable: true }),
    top_k: f.int(o, "top_k", { nullable: true }),
  };
}

function stepRecord(f: Fields, o: Json): StepRecord {
  const step = f.int(o, "step", { required: true })!;
  const phase = f.oneOf(o, "phase", PHASES);
  if (!("loss" in o)) f.fail(`"loss" is missing (a step line needs step, phase and loss)`);
  const nullable = { nullable: true };
  let act: (number | null)[] | null = null;
  if (o.act_ratio !== undefined && o.act_ratio !== null) {
    if (!Array.isArray(o.act_ratio)) {
      f.fail(`"act_ratio" is ${show(o.act_ratio)}, expected an array`);
    }
    act = (o.act_ratio as unknown[]).map((v, j) => f.value(v, `act_ratio[${j}]`, nullable));
  }
  return {
    step,
    phase,
    loss: f.num(o, "loss", nullable),
    val_loss: f.num(o, "val_loss", nullable),
    tokens_per_s: f.num(o, "tokens_per_s", nullable),
    ms_per_step: f.num(o, "ms_per_step", nullable),
    ffn_flops: f.num(o, "ffn_flops", nullable),
    ffn_flops_dense: f.num(o, "ffn_flops_dense", nullable),
    act_ratio: act,
    similarity: f.num(o, "similarity", nullable),
  };
}

/** Reads the `ssd.train` part of a checkpoint's header (no tensor data is read). */
async function checkpointInfo(path: string): Promise<RunCheckpointInfo> {
  const train = metaJson(await readHeader(path), META_TRAIN) ?? {};
  const config = (train.config ?? {}) as Json;
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  const acc = train.accounting as AccountingState | undefined;
  const accOk = acc !== undefined && typeof acc === "object" && acc !== null &&
    typeof acc.steps?.dense === "number" && typeof acc.steps?.sparse === "number" &&
    typeof acc.ffn_flops?.dense === "number" && typeof acc.ffn_flops?.sparse === "number" &&
    typeof acc.ffn_flops_dense === "number" && typeof acc.ms?.dense === "number" &&
    typeof acc.ms?.sparse === "number";
  return {
    path,
    schedule: typeof config.schedule === "string" ? config.schedule : null,
    stable_threshold: num(config.stable_threshold),
    planned_steps: num(config.steps),
    accounting: accOk ? acc : null,
  };
}

/** `dense` with no sparse step, `sparse` when the run stays sparse once switched, else `ssd`. */
export function inferSchedule(steps: readonly StepRecord[]): string {
  const first = steps.findIndex((s) => s.phase === "sparse");
  if (first < 0) return "dense";
  return steps.slice(first).some((s) => s.phase === "dense") ? "ssd" : "sparse";
}

/**
 * Reads one run folder: `metrics.jsonl` (required) and the newest
 * checkpoint's training metadata (optional; a corrupt one is an error).
 *
 * @param dir a folder written by `ssd train`
 * @returns the run, labelled by the folder's name (see `labelRuns`)
 * @throws ConfigError when the folder or its metrics file is missing or malformed
 * @throws CheckpointError when its checkpoint is corrupt
 */
export async function readRun(dir: string): Promise<RunData> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(dir);
  } catch {
    throw new ConfigError(`Run folder ${dir} not found: give folders written by ssd train --out`);
  }
  if (!info.isDirectory) {
    throw new ConfigError(`${dir} is not a folder: give folders written by ssd train --out`);
  }
  const path = join(dir, METRICS_FILE);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    throw new ConfigError(
      `Run folder ${dir} has no ${METRICS_FILE}: give folders written by ssd train --out`,
    );
  }
  const { steps, switches, final, partial_line } = parseMetrics(text, path);
  const ckpt = (await newestRunCheckpoint(dir))?.path;
  const checkpoint = ckpt ? await checkpointInfo(ckpt) : null;
  return {
    dir,
    label: basename(resolve(dir)),
    schedule: checkpoint?.schedule ?? inferSchedule(steps),
    steps,
    switches,
    final,
    checkpoint,
    ...(partial_line === undefined ? {} : { partial_line }),
  };
}

/**
 * Makes labels unique and informative: the folder name, with the parent
 * folder prefixed while two names clash, and the schedule appended unless
 * the name already says it.
 */
export function labelRuns(runs: RunData[]): void {
  const names = uniqueNames(runs.map((r) => resolve(r.dir)));
  runs.forEach((r, i) => {
    r.label = names[i].includes(r.schedule) ? names[i] : `${names[i]} · ${r.schedule}`;
  });
}

/** Per-run totals shown in the summary table. */
export interface RunSummary {
  /** Last step logged. */
  steps: number;
  /** Final dense validation loss. */
  val_loss: number | null;
  /** Final validation loss as an MoE. */
  val_loss_moe: number | null;
  /** Experts per token of that evaluation. */
  top_k: number | null;
  /** Final bits per byte. */
  val_bpb: number | null;
  /** Wall time of steps plus overheads (checkpoint totals), else the sum of step times. */
  wall_s: number | null;
  /** Share of steps trained sparse. */
  sparse_share: number;
  /** FFN FLOPs spent / FFN FLOPs a dense run would have spent. */
  flops_ratio: number | null;
}

/** Totals of a run, from the checkpoint's accounting when it has one, else from the metrics. */
export function summarizeRun(run: RunData): RunSummary {
  const acc = run.checkpoint?.accounting ?? null;
  const last = run.steps.at(-1)!;
  let wall: number | null = null;
  let sparseShare: number;
  let ratio: number | null = null;
  if (acc) {
    // The trainer's own totals, as its summary prints them.
    const t = summarizeAccounting(acc);
    wall = t.wall_s;
    sparseShare = t.sparse.share;
    ratio = acc.ffn_flops_dense > 0 ? t.flops_ratio : null;
  } else {
    const ms = run.steps.map((s) => s.ms_per_step);
    if (ms.every((v) => v !== null)) wall = (ms as number[]).reduce((a, b) => a + b, 0) / 1000;
    sparseShare = run.steps.filter((s) => s.phase === "sparse").length / run.steps.length;
    let spent = 0, dense = 0;
    for (const s of run.steps) {
      spent += s.ffn_flops ?? NaN;
      dense += s.ffn_flops_dense ?? NaN;
    }
    ratio = dense > 0 && Number.isFinite(spent) ? spent / dense : null;
  }
  return {
    steps: last.step,
    val_loss: run.final?.val_loss ?? null,
    val_loss_moe: run.final?.val_loss_moe ?? null,
    top_k: run.final?.top_k ?? null,
    val_bpb: run.final?.val_bpb ?? null,
    wall_s: wall,
    sparse_share: sparseShare,
    flops_ratio: ratio,
  };
}
