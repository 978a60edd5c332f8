/**
 * The SSD schedule as a pure state machine (the rules it asks are in
 * `./switch_rule.ts`, the monitor that measures their readings in
 * `./monitor.ts`, the FLOP accounting in `./accounting.ts`). No GPU, no
 * I/O: `ssd train` asks it, step by step, which phase to run and whether a
 * monitor check is due, and saves `state()` in the checkpoint's `ssd.train`.
 *
 * Step numbering: `step` is the number of optimizer steps already done (0
 * for the first step). A checkpoint taken after step s holds `state()` with
 * `step` = s, and `fromState` resumes with `next(s)`. A switch event's
 * `step` is that same count: the event sits between the metrics lines of
 * steps s and s + 1, and the step it applies to is the first of the new phase.
 *
 * `--schedule ssd`:
 *   - checks are due every `monitor_every` steps counted from the start of
 *     the current phase, dense or sparse, up to the run's tail;
 *   - dense, structure not yet formed: a check that the switch rule counts
 *     as stable adds to the stable counter, any other resets it; `patience`
 *     stable checks in a row switch to sparse (the structure is formed);
 *   - sparse: the phase lasts at most `sparse_steps` (cut at the tail); a
 *     check that sees the structure drift (or the guard fire) ends it early
 *     and the structure counts as not formed again; with `dense_every` n,
 *     every n-th step of the phase runs dense (no event: the phase goes on);
 *   - dense after a sparse phase that ran its length: the structure is still
 *     formed, so the next check returns to sparse unless it sees a drift
 *     (the dense phase lets the structure evolve; the return re-partitions);
 *   - the tail, the last `final_dense` steps, is where the run ends by
 *     `ending`: `dense` (all dense), `refit` (dense, then the partition and
 *     routers are rebuilt from the final weights), `mixed` (sparse and dense
 *     steps alternate, sparse first, so the final model is trained both
 *     ways), or `sparse` (no tail: the phases go on to the end).
 * `--schedule sparse`: dense until `sparse_from`, one switch to sparse
 * (MoE-fy) there, sparse to the end: the static baseline "MoE from step
 * --sparse-from on"; no tail, no checks.
 * `--schedule dense`: dense throughout, no checks, no events.
 */
import { checkExperts, defaultTopK } from "../../core/nn/moe_layout.ts";
import { ConfigError, SsdError } from "../../core/errors.ts";
import { DEFAULT_FRESH_MARGIN } from "../../core/moe/stability.ts";
import { flagOf } from "../config.ts";
import {
  checkRuleConfig,
  endsSparse,
  isStable,
  type MonitorReading,
  type RuleConfig,
} from "./switch_rule.ts";

/** Which schedule `ssd train` runs. */
export type ScheduleKind = "ssd" | "sparse" | "dense";
/** A training phase. */
export type Phase = "dense" | "sparse";
/** How an SSD run ends (see the module comment). */
export type Ending = "dense" | "refit" | "mixed" | "sparse";
/** Every ending. */
export const ENDINGS: readonly Ending[] = Object.freeze(["dense", "refit", "mixed", "sparse"]);

/** The schedule's knobs (snake_case, the `ssd train` flag names with dashes). */
export interface ScheduleConfig extends RuleConfig {
  /** `--schedule`: ssd (switch on stability), sparse (static baseline) or dense. */
  schedule: ScheduleKind;
  /** Steps between monitor checks. */
  monitor_every: number;
  /** Stable checks in a row that switch to sparse while the structure is not formed. */
  patience: number;
  /** Longest sparse phase, in steps. */
  sparse_steps: number;
  /** In a sparse phase, every n-th step runs dense (0: none), so dense mode keeps learning. */
  dense_every: number;
  /** How the run ends. */
  ending: Ending;
  /** Steps of the run's tail; null: 10% of the run, rounded up. */
  final_dense: number | null;
  /** `--schedule sparse`: the step at which the model is MoE-fied; null: 10% of the run, rounded up. */
  sparse_from: number | null;
  /** Experts per FFN layer (divides d_ff). */
  experts: number;
  /** Experts each token uses in a sparse step; null: experts / 4 (at least 1). */
  top_k: number | null;
  /** The monitor keeps a fresh k-means start only when its inertia is lower by more than this share. */
  fresh_margin: number;
  /** Held-out tokens the monitor's probe readings (overlap, coverage, guard) run on. */
  probe_tokens: number;
}

/** The schedule's defaults. */
export const DEFAULT_SCHEDULE_CONFIG: Readonly<ScheduleConfig> = Object.freeze({
  schedule: "ssd",
  switch_rule: "guard",
  monitor_every: 100,
  stable_threshold: 0.9,
  plateau_tolerance: 0.05,
  overlap_threshold: 0.8,
  coverage_threshold: 0.8,
  guard_tolerance: 0.02,
  drift_threshold: 0.5,
  patience: 2,
  sparse_steps: 500,
  dense_every: 4,
  ending: "mixed",
  final_dense: null,
  sparse_from: null,
  experts: 16,
  top_k: null,
  fresh_margin: DEFAULT_FRESH_MARGIN,
  probe_tokens: 2048,
});

/** A config with the run-dependent defaults filled in. */
export interface ResolvedSchedule extends ScheduleConfig {
  /** Steps of the whole run. */
  steps: number;
  /** FFN width the experts divide. */
  d_ff: number;
  final_dense: number;
  sparse_from: number;
  top_k: number;
}

/** What the model and run look like, for the checks and defaults that depend on them. */
export interface ScheduleRun {
  /** Optimizer steps of the whole run. */
  steps: number;
  /** FFN width (the experts must divide it). */
  d_ff: number;
}

function requireInt(key: string, v: unknown, min: number): void {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) {
    const what = min === 0 ? "a non-negative integer" : `an integer >= ${min}`;
    throw new ConfigError(`${flagOf(key)} must be ${what}, got ${v}`);
  }
}

/**
 * Checks a schedule config against the run and fills in the defaults that
 * depend on it. Every error is a `ConfigError` naming the flag.
 */
export function resolveSchedule(
  config: Partial<ScheduleConfig>,
  run: ScheduleRun,
): ResolvedSchedule {
  const c: ScheduleConfig = { ...DEFAULT_SCHEDULE_CONFIG, ...config };
  requireInt("steps", run.steps, 1);
  requireInt("d_ff", run.d_ff, 1);
  if (!["ssd", "sparse", "dense"].includes(c.schedule)) {
    throw new ConfigError(`--schedule must be ssd, sparse or dense, got ${c.schedule}`);
  }
  if (!ENDINGS.includes(c.ending)) {
    throw new ConfigError(`--ending must be one of ${ENDINGS.join(", ")}, got ${c.ending}`);
  }
  for (const k of ["monitor_every", "patience", "sparse_steps", "experts", "probe_tokens"]) {
    requireInt(k, c[k as keyof ScheduleConfig], 1);
  }
  requireInt("dense_every", c.dense_every, 0);
  checkRuleConfig(c);
  if (
    typeof c.fresh_margin !== "number" || !(c.fresh_margin >= 0 && c.fresh_margin < 1)
  ) {
    throw new ConfigError(`--fresh-margin must be in [0, 1), got ${c.fresh_margin}`);
  }
  const topK = c.top_k ?? defaultTopK(c.experts);
  checkExperts(c.experts, topK, run.d_ff);
  const tenth = Math.ceil(run.steps / 10);
  const finalDense = c.final_dense ?? tenth;
  requireInt("final_dense", finalDense, 0);
  if (finalDense > run.steps) {
    throw new ConfigError(`--final-dense ${finalDense} is more than the run's ${run.steps} steps`);
  }
  const sparseFrom = c.sparse_from ?? tenth;
  requireInt("sparse_from", sparseFrom, 0);
  if (sparseFrom > run.steps) {
    throw new ConfigError(`--sparse-from ${sparseFrom} is past the run's ${run.steps} steps`);
  }
  return {
    ...c,
    steps: run.steps,
    d_ff: run.d_ff,
    final_dense: finalDense,
    sparse_from: sparseFrom,
    top_k: topK,
  };
}

/** Why a switch happened. */
export type SwitchReason = "stable" | "length" | "drift" | "guard" | "final" | "static";
/** Every switch reason. */
export const SWITCH_REASONS: readonly SwitchReason[] = Object.freeze([
  "stable",
  "length",
  "drift",
  "guard",
  "final",
  "static",
]);

/** A phase switch: one line of metrics.jsonl and of the saved history */
export interface SwitchEvent {
  /** Always "switch" (tells the line apart from a step's). */
  event: "switch";
  /** Phase before the switch. */
  from: Phase;
  /** Phase after it. */
  to: Phase;
  /** Steps done when the switch applies (the first step of the new phase has this index). */
  step: number;
  /** The similarity of the check that made the switch; null for other switches. */
  similarity: number | null;
  /** What made it. */
  reason: SwitchReason;
}

/** One monitor check. */
export interface MonitorCheck extends MonitorReading {
  /** Steps done at the check. */
  step: number;
  /** Phase the check was made in. */
  phase: Phase;
  /** Stable checks in a row, this one included (0 in sparse phases). */
  stable: number;
}

/** What `next` decided for one step. */
export interface StepPlan {
  /** The phase the step runs in. */
  phase: Phase;
  /** Switches that apply before the step (at most one); a switch to sparse means "MoE-fy now". */
  events: SwitchEvent[];
  /** The check made at this step, if one was due. */
  check: MonitorCheck | null;
}

/** Serializable schedule state (goes into `ssd.train` as JSON). */
export interface ScheduleState {
  /** Format of this object (1: before the switch rules; read as version 2 with no reading kept). */
  version: 1 | 2;
  /** The resolved config (a resume checks it against the flags). */
  config: ResolvedSchedule;
  /** The next step `next` expects (steps done). */
  step: number;
  /** Current phase (a sparse phase's interleaved dense steps do not change it). */
  phase: Phase;
  /** Step at which the current phase started. */
  phase_start: number;
  /** In a sparse phase before the tail: the step at which it returns to dense (cut at the tail); else null. */
  sparse_end: number | null;
  /** Current run of stable checks. */
  stable: number;
  /** Whether the structure counts as formed (a sparse phase ran, and no drift since). */
  formed?: boolean;
  /** The reading of the last dense check since the structure stopped counting as formed. */
  last_dense?: MonitorReading | null;
  /** Every switch so far. */
  history: SwitchEvent[];
  /** Every monitor check so far. */
  checks: MonitorCheck[];
}

/**
 * The SSD state machine. Call `next(step, reading)` once per step, in
 * order, before running it; pass a reading exactly when `needsMonitor(step)`
 * is true (measured as `readingsFor(rule, phase)` asks).
 */
export class SsdSchedule {
  readonly config: ResolvedSchedule;
  #step = 0;
  #phase: Phase = "dense";
  #phaseStart = 0;
  #sparseEnd: number | null = null;
  #stable = 0;
  #formed = false;
  #lastDense: MonitorReading | null = null;
  #history: SwitchEvent[] = [];
  #checks: MonitorCheck[] = [];

  /** A schedule at step 0; see `resolveSchedule` for the checks. */
  constructor(config: Partial<ScheduleConfig>, run: ScheduleRun) {
    this.config = resolveSchedule(config, run);
  }

  /**
   * Rebuilds a schedule from `state()` (e.g. after JSON), checking it is
   * consistent. With `replan` it continues under that config and run length
   * (a resume with more `--steps`): the length-dependent defaults are
   * resolved again and a sparse phase under way ends where the new plan
   * ends it; the same config and length replay the saved plan exactly.
   */
  static fromState(
    state: ScheduleState,
    replan?: { config: Partial<ScheduleConfig>; run: ScheduleRun },
  ): SsdSchedule {
    if ((state?.version !== 1 && state?.version !== 2) || !state.config) {
      throw new ConfigError(`Cannot resume the schedule: unknown state format ${state?.version}`);
    }
    const { steps, d_ff, ...saved } = state.config;
    const s = new SsdSchedule(replan?.config ?? saved, replan?.run ?? { steps, d_ff });
    const c = s.config;
    const bad = (why: string) => new ConfigError(`Cannot resume the schedule: ${why}`);
    if (!Number.isSafeInteger(state.step) || state.step < 0 || state.step > c.steps) {
      throw bad(`step ${state.step} is outside the run's ${c.steps} steps`);
    }
    if (state.phase !== "dense" && state.phase !== "sparse") throw bad(`phase ${state.phase}`);
    if (!(state.phase_start >= 0 && state.phase_start <= state.step)) {
      throw bad(`phase start ${state.phase_start} is after step ${state.step}`);
    }
    if (replan && c.schedule !== saved.schedule) {
      throw bad(`the run was trained with --schedule ${saved.schedule}, not ${c.schedule}`);
    }
    // A lower --patience on resume: the stable run so far switches at the next check.
    const stable = replan ? Math.min(state.stable, c.patience - 1) : state.stable;
    if (!Number.isSafeInteger(stable) || stable < 0 || stable >= c.patience) {
      throw bad(`stable count ${state.stable} is not in [0, ${c.patience})`);
    }
    let sparseEnd = state.phase === "sparse" ? state.sparse_end : null;
    const inTail = c.ending === "mixed" && state.step > s.tailStart;
    if (state.phase === "sparse" && !inTail) {
      const limit = c.schedule === "ssd" ? s.tailStart : c.steps;
      if (replan && sparseEnd !== null) {
        sparseEnd = c.schedule === "ssd"
          ? Math.max(state.step, Math.min(state.phase_start + c.sparse_steps, limit))
          : c.steps;
      }
      const fits = sparseEnd !== null && sparseEnd >= state.step && sparseEnd <= limit;
      if (c.schedule === "dense" || !fits) {
        throw bad(`sparse phase ending at ${sparseEnd} does not fit a ${c.schedule} schedule`);
      }
    }
    s.#step = state.step;
    s.#phase = state.phase;
    s.#phaseStart = state.phase_start;
    s.#sparseEnd = sparseEnd;
    s.#stable = stable;
    s.#formed = state.formed ?? false;
    s.#lastDense = state.last_dense ? { ...state.last_dense } : null;
    s.#history = state.history.map((e) => ({ ...e }));
    s.#checks = state.checks.map((e) => ({ ...e }));
    return s;
  }

  /** A JSON-safe copy of the state. */
  state(): ScheduleState {
    return {
      version: 2,
      config: { ...this.config },
      step: this.#step,
      phase: this.#phase,
      phase_start: this.#phaseStart,
      sparse_end: this.#sparseEnd,
      stable: this.#stable,
      formed: this.#formed,
      last_dense: this.#lastDense ? { ...this.#lastDense } : null,
      history: this.#history.map((e) => ({ ...e })),
      checks: this.#checks.map((e) => ({ ...e })),
    };
  }

  /** The next step `next` expects. */
  get step(): number {
    return this.#step;
  }

  /** The phase of the last step `next` planned (dense before the first). */
  get phase(): Phase {
    return this.#phase;
  }

  /** In a sparse phase before the tail, the sparse steps still to run (the current one included once `next` returned it); else 0. */
  get sparseStepsLeft(): number {
    return this.#sparseEnd === null ? 0 : this.#sparseEnd - this.#step;
  }

  /** Current run of stable checks. */
  get stable(): number {
    return this.#stable;
  }

  /** Every switch so far. */
  get history(): readonly SwitchEvent[] {
    return this.#history;
  }

  /** Every monitor check so far. */
  get checks(): readonly MonitorCheck[] {
    return this.#checks;
  }

  /** First step of the run's tail (`ssd` with a tail; the run's length otherwise). */
  get tailStart(): number {
    const c = this.config;
    return c.schedule === "ssd" && c.ending !== "sparse" ? c.steps - c.final_dense : c.steps;
  }

  /**
   * The phase of a step that is already planned (`step` < `this.step`),
   * from the history of switches and, in a mixed tail, its alternation.
   */
  phaseAt(step: number): Phase {
    if (!Number.isSafeInteger(step) || step < 0 || step >= this.#step) {
      throw new SsdError(
        `SsdSchedule.phaseAt: step ${step} is not planned yet (planned: 0..${this.#step - 1})`,
      );
    }
    let phase: Phase = "dense";
    let start = 0;
    for (const e of this.#history) {
      if (e.step > step) break;
      phase = e.to;
      start = e.step;
    }
    return this.#stepPhase(step, phase, start);
  }

  /**
   * The phase step `step` runs in, in a phase `phase` that started at
   * `start`: a sparse phase's interleaved dense steps (every `dense_every`-th,
   * and every other step of a mixed tail, sparse first) run dense.
   */
  #stepPhase(step: number, phase: Phase, start: number): Phase {
    const c = this.config;
    if (phase !== "sparse" || c.schedule !== "ssd") return phase;
    if (step >= this.tailStart) {
      return c.ending === "mixed" && (step - this.tailStart) % 2 === 1 ? "dense" : phase;
    }
    const n = c.dense_every;
    return n > 0 && (step - start) % n === n - 1 ? "dense" : phase;
  }

  /** Whether `next(step)` needs a reading (a monitor check is due at this step). */
  needsMonitor(step: number): boolean {
    const c = this.config;
    if (c.schedule !== "ssd" || step !== this.#step || step >= this.tailStart) return false;
    // A sparse phase that ends at this step needs no check: its end is already decided.
    if (this.#phase === "sparse" && step >= this.#sparseEnd!) return false;
    const since = step - this.#phaseStart;
    return since > 0 && since % c.monitor_every === 0;
  }

  /**
   * Plans step `step` (which must be `this.step`): applies a due check's
   * reading and returns the step's phase and the switches to apply before it.
   */
  next(step: number, reading?: MonitorReading): StepPlan {
    const c = this.config;
    if (step !== this.#step) {
      throw new SsdError(`SsdSchedule.next: expected step ${this.#step}, got ${step}`);
    }
    if (step >= c.steps) {
      throw new SsdError(`SsdSchedule.next: step ${step} is past the run's ${c.steps} steps`);
    }
    const due = this.needsMonitor(step);
    if (due && reading === undefined) {
      throw new SsdError(`SsdSchedule.next: a monitor check is due at step ${step}`);
    }
    if (!due && reading !== undefined) {
      throw new SsdError(`SsdSchedule.next: no monitor check is due at step ${step}`);
    }
    for (const [k, v] of Object.entries(reading ?? {})) {
      if (v !== null && !Number.isFinite(v)) {
        throw new SsdError(`SsdSchedule.next: ${k} must be finite or null, got ${v}`);
      }
    }
    const events: SwitchEvent[] = [];
    let check: MonitorCheck | null = null;
    if (c.schedule === "sparse") {
      if (this.#phase === "dense" && step >= c.sparse_from) {
        this.#go(events, step, "sparse", "static", null);
        this.#sparseEnd = c.steps;
      }
    } else if (c.schedule === "ssd" && step >= this.tailStart) {
      this.#tail(events, step);
    } else if (c.schedule === "ssd") {
      if (this.#phase === "sparse" && step >= this.#sparseEnd!) {
        this.#go(events, step, "dense", "length", null);
        this.#sparseEnd = null;
      }
      if (reading) check = this.#check(events, step, reading);
    }
    this.#step = step + 1;
    return { phase: this.#stepPhase(step, this.#phase, this.#phaseStart), events, check };
  }

  #go(events: SwitchEvent[], step: number, to: Phase, reason: SwitchReason, sim: number | null) {
    const e: SwitchEvent = {
      event: "switch",
      from: this.#phase,
      to,
      step,
      similarity: sim,
      reason,
    };
    events.push(e);
    this.#history.push(e);
    this.#phase = to;
    this.#phaseStart = step;
  }

  /** The tail: dense (or refit) ends dense; mixed is one sparse phase whose every other step is dense. */
  #tail(events: SwitchEvent[], step: number): void {
    this.#sparseEnd = null;
    if (this.config.ending !== "mixed") {
      if (this.#phase === "sparse") this.#go(events, step, "dense", "final", null);
    } else if (this.#phase === "dense") {
      this.#go(events, step, "sparse", "final", null);
    }
  }

  /** Applies a due check's reading: a switch to sparse, an early end of one, or nothing. */
  #check(events: SwitchEvent[], step: number, r: MonitorReading): MonitorCheck {
    const c = this.config;
    const sim = r.similarity;
    if (this.#phase === "sparse") {
      const why = endsSparse(c, r);
      const check: MonitorCheck = { ...r, step, phase: "sparse", stable: 0 };
      this.#checks.push(check);
      if (why) {
        this.#go(events, step, "dense", why, sim);
        this.#sparseEnd = null;
        this.#formed = false;
        this.#stable = 0;
        this.#lastDense = null;
      }
      return check;
    }
    let enter: boolean;
    if (this.#formed) {
      // The structure was formed before this dense phase: return unless it drifted.
      enter = endsSparse(c, r) === null;
      if (!enter) this.#formed = false;
      this.#stable = 0;
    } else {
      this.#stable = isStable(c, r, this.#lastDense) ? this.#stable + 1 : 0;
      enter = this.#stable >= c.patience;
    }
    this.#lastDense = this.#formed ? null : { ...r };
    const check: MonitorCheck = { ...r, step, phase: "dense", stable: this.#stable };
    this.#checks.push(check);
    if (enter) {
      this.#go(events, step, "sparse", "stable", sim);
      this.#sparseEnd = Math.min(step + c.sparse_steps, this.tailStart);
      this.#stable = 0;
      this.#formed = true;
      this.#lastDense = null;
    }
    return check;
  }
}
