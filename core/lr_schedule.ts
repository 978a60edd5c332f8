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
  return s;
}

/** The learning rate of update `step` (0-based) under schedule `s`. */
export function lrAt(step: number, s: LrSchedule): number {
  if (!Number.isInteger(step) || step < 0) {
    throw new RangeError(`lrAt(): step must be an integer >= 0, got ${step}`);
  }
  checkLrSchedule(s);
  if (step < s.warmup) return (s.maxLr * (step + 1)) / s.warmup;
  if (step >= s.total) return s.minLr;
  const r = (step - s.warmup) / (s.total - s.warmup);
  return s.minLr + 0.5 * (1 + Math.cos(Math.PI * r)) * (s.maxLr - s.minLr);
}
