/**
 * Turning per-step metrics into the few hundred points a plot needs. A long
 * run logs every step (2000 steps = 2000 points per series, several series
 * per run), which would make the page heavy and the lines unreadable, so:
 * noisy series (loss, tokens/s) get a trailing moving mean, then every
 * series is cut to at most `MAX_POINTS` by averaging consecutive groups;
 * step functions (FFN FLOPs) keep only the points where they change; phases
 * become one span per sparse interval.
 */
import type { StepRecord } from "./data.ts";

/** Most points one series of a plot keeps. */
export const MAX_POINTS = 500;

/** Steps per moving-mean window: 1% of the run, at least 1 (no smoothing on short runs). */
export function smoothingWindow(steps: number): number {
  return Math.max(1, Math.round(steps / 100));
}

/** One point of a series; `y` null breaks the line (a value missing at that step). */
export interface Point {
  /** Step. */
  x: number;
  /** Value, or null for a gap. */
  y: number | null;
}

/**
 * Trailing moving mean over `window` points, skipping nulls inside the
 * window; a null point stays null so gaps survive.
 */
export function movingMean(points: readonly Point[], window: number): Point[] {
  let sum = 0;
  let count = 0;
  return points.map((p, i) => {
    if (p.y !== null) {
      sum += p.y;
      count++;
    }
    const old = i - window >= 0 ? points[i - window].y : null;
    if (old !== null) {
      sum -= old;
      count--;
    }
    return { x: p.x, y: p.y === null || count === 0 ? null : sum / count };
  });
}

/**
 * Cuts a series to at most `max` points: consecutive groups of
 * ceil(n / max) points become one point at their mean step and mean value.
 * A group with no value becomes a gap.
 */
export function downsample(points: readonly Point[], max = MAX_POINTS): Point[] {
  if (points.length <= max) return points.slice();
  const size = Math.ceil(points.length / max);
  const out: Point[] = [];
  for (let i = 0; i < points.length; i += size) {
    const group = points.slice(i, i + size);
    const vals = group.filter((p) => p.y !== null);
    if (vals.length === 0) {
      out.push({ x: group[0].x, y: null });
    } else {
      const mean = (f: (p: Point) => number) => vals.reduce((a, p) => a + f(p), 0) / vals.length;
      out.push({ x: mean((p) => p.x), y: mean((p) => p.y!) });
    }
  }
  return out;
}

/** A smoothed, downsampled series of `get` over the steps. */
export function smoothSeries(
  steps: readonly StepRecord[],
  get: (s: StepRecord) => number | null,
): Point[] {
  const raw = steps.map((s) => ({ x: s.step, y: get(s) }));
  return downsample(movingMean(raw, smoothingWindow(steps.length)));
}

/** A downsampled series of `get` over the steps, without smoothing. */
export function plainSeries(
  steps: readonly StepRecord[],
  get: (s: StepRecord) => number | null,
): Point[] {
  return downsample(steps.map((s) => ({ x: s.step, y: get(s) })));
}

/**
 * The points of a step function where it changes: the first and last point
 * and each point on either side of a change, so a `step-after` line
 * through them redraws it exactly. Steps with no value are skipped.
 */
export function changePoints(
  steps: readonly StepRecord[],
  get: (s: StepRecord) => number | null,
): Point[] {
  const pts = steps.map((s) => ({ x: s.step, y: get(s) })).filter((p) => p.y !== null);
  return pts.filter((p, i) =>
    i === 0 || i === pts.length - 1 || p.y !== pts[i - 1].y || p.y !== pts[i + 1].y
  );
}

/** A sparse interval: steps in (x0, x1] trained sparse. */
export interface Span {
  /** Step before the first sparse step. */
  x0: number;
  /** Last sparse step. */
  x1: number;
}

/** One span per run of consecutive sparse steps. */
export function sparseSpans(steps: readonly StepRecord[]): Span[] {
  const spans: Span[] = [];
  let open: Span | null = null;
  steps.forEach((s, i) => {
    if (s.phase === "sparse") {
      if (open) open.x1 = s.step;
      else open = { x0: i > 0 ? steps[i - 1].step : s.step - 1, x1: s.step };
    } else if (open) {
      spans.push(open);
      open = null;
    }
  });
  if (open) spans.push(open);
  return spans;
}
