/**
 * `metrics.jsonl`, the per-step log of a training run: its file
 * name, the type of each line, the writer and a tolerant reader. The writer
 * appends whole lines only: a failed write is truncated back to the last
 * whole line, so the file never holds a torn line that this process wrote.
 * A process killed mid-write can still leave one; the reader reports it
 * instead of failing, and a resume drops it. Readers of run folders (the
 * report) import the name and the reader from here.
 */
import { join } from "node:path";
import { writeFileAtomic } from "../../core/atomic_write.ts";
import type { Phase, SwitchEvent } from "./schedule.ts";
import { onDisk } from "./run_folder.ts";

/** File name of the per-step metrics in a run folder. */
export const METRICS_FILE = "metrics.jsonl";

/** One training step's line of metrics.jsonl. */
export interface StepMetrics {
  /** Steps done, this one included. */
  step: number;
  /** The step's phase. */
  phase: Phase;
  /** Training loss of the step's batch (nats/token). */
  loss: number;
  /** Validation loss when evaluated after this step. */
  val_loss?: number;
  /** Learning rate used. */
  lr: number;
  /** Global gradient norm before clipping. */
  grad_norm: number;
  /** Tokens of the batch per second of step time. */
  tokens_per_s: number;
  /** Step time (upload, forward, backward, optimizer, the one host wait). */
  ms_per_step: number;
  /** FFN FLOPs the step spent (forward + backward). */
  ffn_flops: number;
  /** What a dense step would have spent. */
  ffn_flops_dense: number;
  /** Per FFN layer, the fraction of activations > 0 on this step's batch (dense steps). */
  act_ratio?: number[];
  /** Partition similarity (mean ARI over layers) when the monitor ran before this step. */
  similarity?: number | null;
  /** Oracle top-k overlap with the previous check, when the switch rule measured it. */
  overlap?: number;
  /** Router coverage of activation mass at top-k, when the switch rule measured it. */
  coverage?: number;
  /** Relative probe-loss gap of the MoE at top-k against dense, when the switch rule measured it. */
  moe_gap?: number;
  /** Sparse steps: per layer, the tokens routed to each expert. */
  expert_load?: number[][];
}

/** The last line of a finished run. */
export interface FinalMetrics {
  /** Steps done. */
  step: number;
  /** Phase of the last step. */
  phase: Phase;
  /** Validation loss of the dense model on the final validation tokens. */
  val_loss: number;
  /** The same in bits per byte. */
  val_bpb: number;
  /** Always true (tells the line apart from a step's). */
  final: true;
  /** Validation loss as an MoE at `top_k` (runs that formed experts). */
  val_loss_moe?: number;
  /** Experts per token of that evaluation. */
  top_k?: number;
}

/** Any line of metrics.jsonl, as the trainer builds it. */
export type MetricsLine = StepMetrics | SwitchEvent | FinalMetrics;

/**
 * A line as it stands in the file: the trainer's line plus `time`, the Unix
 * time in seconds (ms precision) when it was queued, so that runs line up
 * with other logs and a resumed run's pause is visible.
 */
export type MetricsRecord = MetricsLine & { time: number };

/** What `readMetrics` found. */
export interface MetricsFile {
  /** Every complete line that parsed as a JSON object, in file order. */
  lines: Record<string, unknown>[];
  /** The 1-based line number of each of `lines`. */
  numbers: number[];
  /** 1-based numbers of complete lines that are not JSON objects. */
  bad: number[];
  /** Text after the last newline (a write cut short), or null. */
  partial: string | null;
}

/** Parses metrics.jsonl text: complete lines are kept, a torn last line is reported. */
export function parseMetricsText(text: string): MetricsFile {
  const parts = text.split("\n");
  const tail = parts.pop()!;
  const lines: Record<string, unknown>[] = [];
  const numbers: number[] = [];
  const bad: number[] = [];
  parts.forEach((l, i) => {
    try {
      const o = JSON.parse(l);
      if (o !== null && typeof o === "object" && !Array.isArray(o)) {
        lines.push(o);
        numbers.push(i + 1);
      } else bad.push(i + 1);
    } catch {
      bad.push(i + 1);
    }
  });
  return { lines, numbers, bad, partial: tail === "" ? null : tail };
}

/** Reads `<dir>/metrics.jsonl` tolerantly (see `parseMetricsText`); null when it is absent. */
export async function readMetrics(dir: string): Promise<MetricsFile | null> {
  const path = join(dir, METRICS_FILE);
  try {
    return parseMetricsText(await Deno.readTextFile(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    return onDisk(path, "read", () => Promise.reject(e));
  }
}

/**
 * Whether a line belongs to a run resumed after `step` steps: step lines up
 * to it, switch events before it (an event at `step` is planned again by the
 * resumed run); never the final line of the run that is now extended.
 */
function keptOnResume(o: Record<string, unknown>, step: number): boolean {
  // A finished run that is extended is no longer finished.
  if (o.final === true) return false;
  const s = typeof o.step === "number" ? o.step : 0;
  return o.event !== undefined ? s < step : s <= step;
}

/** The appending writer of a run's metrics.jsonl. */
export class MetricsLog {
  /** The file. */
  readonly path: string;
  #pending: string[] = [];

  private constructor(path: string) {
    this.path = path;
  }

  /**
   * The log of a run in `dir`. A new run starts with no file (it is created
   * by the first write, so a run that never ran a step leaves none). A run
   * resumed after `resumeStep` steps keeps the lines up to that step and
   * drops the rest (steps the interrupted run did after its last
   * checkpoint, and a torn last line); `onDrop` hears what was dropped.
   */
  static async open(
    dir: string,
    resumeStep: number | null,
    onDrop?: (what: string) => void,
  ): Promise<MetricsLog> {
    const log = new MetricsLog(join(dir, METRICS_FILE));
    if (resumeStep === null) return log;
    const file = await readMetrics(dir);
    if (!file) return log;
    const kept = file.lines.filter((o) => keptOnResume(o, resumeStep));
    const dropped = file.lines.length - kept.length + file.bad.length;
    if (dropped === 0 && file.partial === null) return log;
    if (dropped > 0) onDrop?.(`${dropped} lines the run writes again from step ${resumeStep}`);
    if (file.partial !== null) onDrop?.("a partial last line");
    const text = kept.map((o) => JSON.stringify(o) + "\n").join("");
    await onDisk(log.path, "write", () => writeFileAtomic(log.path, text));
    return log;
  }

  /** Queues a line, stamped with `time` (now unless given), for the next `flush`. */
  add(line: MetricsLine, time: number = Date.now() / 1000): void {
    const record: MetricsRecord = { ...line, time: Math.round(time * 1000) / 1000 };
    this.#pending.push(JSON.stringify(record) + "\n");
  }

  /** Lines queued and not yet written. */
  get pending(): number {
    return this.#pending.length;
  }

  /**
   * Appends the queued lines. On failure (a full disk, a read-only folder)
   * the file is cut back to its length before the write and the error names
   * the file and the cause.
   */
  async flush(): Promise<void> {
    if (this.#pending.length === 0) return;
    const bytes = new TextEncoder().encode(this.#pending.join(""));
    await onDisk(this.path, "write", async () => {
      const file = await Deno.open(this.path, { append: true, create: true });
      let size = -1;
      try {
        size = (await file.stat()).size;
        let done = 0;
        while (done < bytes.length) done += await file.write(bytes.subarray(done));
      } catch (e) {
        if (size >= 0) await file.truncate(size).catch(() => {});
        throw e;
      } finally {
        file.close();
      }
    });
    this.#pending = [];
  }
}
