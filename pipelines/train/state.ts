/**
 * The training state saved in each checkpoint's `ssd.train`:
 * everything beyond the weights and AdamW moments that a resume needs to
 * continue the run exactly, plus the run's identity, so checkpoints of two
 * runs in one folder are never taken for one run.
 */
import { ConfigError } from "../../core/errors.ts";
import type { SamplerState } from "../../core/data.ts";
import type { LrSchedule } from "../../core/lr_schedule.ts";
import type { AccountingState } from "./accounting.ts";
import type { TrainConfig } from "./config.ts";
import type { MonitorState } from "./monitor.ts";
import type { Phase, ScheduleState, SwitchEvent } from "./schedule.ts";

/** Training state saved as `ssd.train`. */
export interface TrainState {
  /** The run this checkpoint belongs to (the same in every checkpoint of one run). */
  run_id: string;
  /** Steps done. */
  step: number;
  /** Tokens trained on, over every invocation of the run. */
  tokens_seen: number;
  /** Phase of the last step. */
  phase: Phase;
  /** Every switch so far. */
  phase_history: SwitchEvent[];
  /** The SSD schedule's state. */
  schedule: ScheduleState;
  /** FLOP and time totals. */
  accounting: AccountingState;
  /** The partition monitor's reference partitions. */
  monitor: MonitorState;
  /** Where the data order continues. */
  sampler: SamplerState;
  /** The learning-rate schedule (re-planned when a resume changes the run's length). */
  lr_schedule: LrSchedule;
  /** AdamW's step count (bias correction). */
  optimizer_step: number;
  /** Tokenizer id. */
  tokenizer: string;
  /** What the data was (`--data` path or the embedded corpus). */
  data_source: string;
  /** The config the run trains under. */
  config: TrainConfig;
}

/** A new run identity. */
export function newRunId(): string {
  return crypto.randomUUID();
}

/**
 * Checks that a checkpoint's `ssd.train` is a training state this version
 * can continue; `path` names the checkpoint in the error.
 */
export function parseTrainState(train: Record<string, unknown> | null, path: string): TrainState {
  const fail = (what: string): never => {
    throw new ConfigError(`Cannot resume from ${path}: ${what}`);
  };
  if (!train) fail("it holds no training state (a checkpoint saved by ssd train is needed)");
  const st = train as unknown as TrainState;
  if (!Number.isSafeInteger(st.step) || st.step < 0) fail(`its step ${st.step} is not a count`);
  if (!st.sampler || typeof st.sampler !== "object") fail("it holds no data sampler state");
  if (!st.config || typeof st.config !== "object") fail("it holds no training config");
  if (!st.lr_schedule || typeof st.lr_schedule !== "object") fail("it holds no LR schedule");
  if (!Number.isSafeInteger(st.optimizer_step)) fail("it holds no optimizer step count");
  // The schedule plans the step after the saved one: a mismatch would only surface mid-run.
  if (st.schedule && st.schedule.step !== st.step) {
    fail(`its schedule is at step ${st.schedule.step} but its training state at step ${st.step}`);
  }
  return st;
}
