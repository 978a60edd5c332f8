/**
 * Learning-rate schedule: linear warmup, then cosine decay to a floor
 * (nanoGPT's `get_lr`). The rate is a pure function of the step and the
 * schedule's four numbers, so the schedule's whole state is this plain
 * object: it goes into a checkpoint as JSON and resume needs nothing else.
 *
 *   step <  warmup:          maxLr * (step + 1) / warmup
 *   warmup <= step < total:  minLr + 0.5 * (1 + cos(pi * r)) * (maxLr - minLr),
 *                            r = (step - warmup) / (total - warmup)
 *   step >= total:           minLr
 *
 * Steps count from 0 (the first update uses `lrAt(0, s)`).
 *
 * A run extended past its planned length (`extendLrSchedule`) keeps every
 * rate it already used (the steps before go by the schedule it had, kept in
 * `continued`): from the step it is extended at, the rate decays by the same
 * cosine from its value there to `minLr` at the new `total`, so the curve
 * has no jump.
 */
import { ConfigError } from "./errors.ts";

/** A warmup + cosine schedule; plain JSON-serializable data. */
export interface LrSchedule {
  /** Peak rate, reached at the end of warmup. */
  maxLr: number;
  /** Floor the cosine decays to, and the rate after `total` steps. */
  minLr: number;
  /** Warmup steps (0 for none). */
  warmup: number;
  /** Step at which the decay reaches `minLr`. */
  total: number;
  /**
   * Set by `extendLrSchedule`: steps before `step` follow `schedule` (the
   * plan they were trained under); from `step` the cosine starts at `lr`.
   */
  continued?: { step: number; lr: number; schedule: LrSchedule };
}

/** Throws `ConfigError` unless `s` is a usable schedule; returns it. */
export function checkLrSchedule(s: LrSchedule): LrSchedule {
  const bad = (what: string) => {
    throw new ConfigError(`LR schedule: ${what} (got ${JSON.stringify(s)})`);
  };
  if (!Number.isFinite(s.maxLr) || s.maxLr < 0) bad("maxLr must be a finite number >= 0");
  if (!Number.isFinite(s.minLr) || s.minLr < 0) bad("minLr must be a finite number >= 0");
  if (s.minLr > s.maxLr) bad("minLr must not exceed maxLr");
  if (!Number.isInteger(s.warmup) || s.warmup < 0) bad("warmup must be an integer >= 0");
  if (!Number.isInteger(s.total) || s.total < 0) bad("total must be an integer >= 0");
  if (s.warmup > s.total) bad("warmup must not exceed total");
  if (s.continued !== undefined) {
    const { step, lr, schedule } = s.continued;
    if (!Number.isInteger(step) || step < s.warmup || step > s.total) {
      bad("continued.step must be an integer in [warmup, total]");
    }
    if (!(lr >= s.minLr && lr <= s.maxLr)) bad("continued.lr must be in [minLr, maxLr]");
    checkLrSchedule(schedule);
  }
  return s;
}

/** The learning rate of update `step` (0-based) under schedule `s`. */
export function lrAt(step: number, s: LrSchedule): number {
  if (!Number.isInteger(step) || step < 0) {
    throw new RangeError(`lrAt(): step must be an integer >= 0, got ${step}`);
  }
  checkLrSchedule(s);
  if (step < s.warmup) return (s.maxLr * (step + 1)) / s.warmup;
  if (s.continued && step < s.continued.step) return lrAt(step, s.continued.schedule);
  if (step >= s.total) return s.minLr;
  const from = s.continued ?? { step: s.warmup, lr: s.maxLr };
  const r = (step - from.step) / (s.total - from.step);
  return s.minLr + 0.5 * (1 + Math.cos(Math.PI * r)) * (from.lr - s.minLr);
}

/**
 * The schedule of a run that continues at `step` for `total` steps in all
 * (more than planned): rates before `step` are unchanged, and from `step`
 * the rate decays from its current value to `minLr` at `total`. During
 * warmup only the end of the decay moves. Returns `s` when `total` is its own.
 */
export function extendLrSchedule(s: LrSchedule, step: number, total: number): LrSchedule {
  checkLrSchedule(s);
  if (!Number.isInteger(total) || total < step || step < 0) {
    throw new RangeError(`extendLrSchedule(): need 0 <= step (${step}) <= total (${total})`);
  }
  if (total === s.total) return s;
  if (step <= s.warmup) return checkLrSchedule({ ...s, total });
  return checkLrSchedule({ ...s, total, continued: { step, lr: lrAt(step, s), schedule: s } });
}
