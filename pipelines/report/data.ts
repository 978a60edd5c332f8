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
import type { AccountingState } from "../train/accounting.ts";
import { METRICS_FILE } from "../train/metrics.ts";
import { newestRunCheckpoint } from "../train/run_folder.ts";
import type { Phase } from "../train/schedule.ts";

export type { Phase };
export { METRICS_FILE };

/** One training step of `metrics.jsonl` (the keys the report uses). */
export interface StepRecord {
  /** Step number (1-based). */
  step: number;
  /** Phase the step ran in. */
  phase: Phase;
  /** Training loss; null when the run wrote a non-finite loss. */
  loss: number | null;
  /** Validation loss, on steps that evaluated. */
  val_loss: number | null;
  /** Training throughput of the step. */
  tokens_per_s: number | null;
  /** Wall time of the step, ms. */
  ms_per_step: number | null;
  /** FFN FLOPs the step spent. */
  ffn_flops: number | null;
  /** FFN FLOPs the step would have spent dense. */
  ffn_flops_dense: number | null;
  /** Activation ratio per FFN layer (dense steps). */
  act_ratio: (number | null)[] | null;
  /** Partition similarity, on steps after a stability check (null: first check). */
  similarity: number | null;
}

/** A `{"event": "switch"}` line. */
export interface SwitchRecord {
  /** Last step of the old phase. */
  step: number;
  /** Phase left. */
  from: Phase;
  /** Phase entered. */
  to: Phase;
  /** Similarity that triggered the switch (null for forced switches). */
  similarity: number | null;
}

/** The last line of a finished run (`"final": true`). */
export interface FinalRecord {
  /** Step of the final evaluation. */
  step: number;
  /** Validation loss of the dense model, nats/token. */
  val_loss: number;
  /** The same in bits per byte. */
  val_bpb: number | null;
  /** Validation loss as an MoE at `top_k` (null for dense runs). */
  val_loss_moe: number | null;
  /** Experts per token of the MoE evaluation. */
  top_k: number | null;
}

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
 * Parses the text of a `metrics.jsonl`. A blank line (other than the file's
 * trailing newline) or a line that is not a JSON object is an error; unknown
 * keys and unknown `event` lines are skipped so that newer files still read.
 * A last line with no newline that does not parse is one the trainer is
 * still writing (or was killed writing): it is left out and its number
 * returned as `partial_line`.
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
  const steps: StepRecord[] = [];
  const switches: SwitchRecord[] = [];
  let final: FinalRecord | null = null;
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  let partial: number | undefined;
  if (!text.endsWith("\n") && lines.length > 0 && !parses(lines.at(-1)!)) {
    partial = lines.length;
    lines.pop();
  }
  lines.forEach((line, i) => {
    const f = new Fields(`${path} line ${i + 1}`);
    if (line.trim() === "") f.fail("the line is empty (expected one JSON object per line)");
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch (e) {
      f.fail(`not valid JSON (${(e as Error).message.split("\n")[0]})`);
    }
    const o = f.object(parsed, "the line");
    if ("event" in o) {
      if (o.event !== "switch") return;
      switches.push({
        step: f.int(o, "step", { required: true })!,
        from: f.oneOf(o, "from", PHASES),
        to: f.oneOf(o, "to", PHASES),
        similarity: f.num(o, "similarity", { nullable: true }),
      });
      return;
    }
    const step = f.int(o, "step", { required: true })!;
    const phase = f.oneOf(o, "phase", PHASES);
    if (o.final === true) {
      final = {
        step,
        val_loss: f.num(o, "val_loss", { required: true })!,
        val_bpb: f.num(o, "val_bpb", { nullable: true }),
        val_loss_moe: f.num(o, "val_loss_moe", { nullable: true }),
        top_k: f.int(o, "top_k", { nullable: true }),
      };
      return;
    }
    if (!("loss" in o)) f.fail(`"loss" is missing (a step line needs step, phase and loss)`);
    const nullable = { nullable: true };
    let act: (number | null)[] | null = null;
    if (o.act_ratio !== undefined && o.act_ratio !== null) {
      if (!Array.isArray(o.act_ratio)) {
        f.fail(`"act_ratio" is ${show(o.act_ratio)}, expected an array`);
      }
      act = (o.act_ratio as unknown[]).map((v, j) => f.value(v, `act_ratio[${j}]`, nullable));
    }
    steps.push({
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
    });
  });
  if (steps.length === 0) {
    throw new ConfigError(`${path} holds no training steps: is the run still starting?`);
  }
  steps.sort((a, b) => a.step - b.step);
  return partial === undefined ? { steps, switches, final } : {
    steps,
    switches,
    final,
    partial_line: partial,
  };
}

function parses(line: string): boolean {
  try {
    JSON.parse(line);
    return true;
  } catch {
    return false;
  }
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
    const overhead = Object.values(acc.overhead_ms ?? {}).reduce((a, b) => a + (Number(b) || 0), 0);
    wall = (acc.ms.dense + acc.ms.sparse + overhead) / 1000;
    const n = acc.steps.dense + acc.steps.sparse;
    sparseShare = n > 0 ? acc.steps.sparse / n : 0;
    ratio = acc.ffn_flops_dense > 0
      ? (acc.ffn_flops.dense + acc.ffn_flops.sparse) / acc.ffn_flops_dense
      : null;
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
