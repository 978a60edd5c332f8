/**
 * The SSD schedule as a pure state machine and the partition
 * monitor whose similarity drives the switch (the FLOP accounting is in
 * `./accounting.ts`). No GPU (unless `balancedKMeans` chooses one for the monitor),
 * no I/O: `ssd train` asks this module, step by step, which phase to run and
 * what to log, and saves `state()` in the checkpoint's `ssd.train`.
 *
 * Step numbering: `step` is the number of optimizer steps already done (0
 * for the first step, as in the training loop of `./run.ts`). The
 * step with that index is the one about to run. A checkpoint taken after
 * step s holds `state()` with `step` = s, and `fromState` resumes with
 * `next(s)`. A switch event's `step` is that same count: the event sits
 * between the metrics lines of steps s and s + 1 (metrics lines carry the
 * count after their step), and the step it applies to is the first one in
 * the new phase.
 *
 * `--schedule ssd`:
 *   - dense: a monitor check is due every `monitor_every` steps counted from
 *     the start of the dense phase (steps p + m, p + 2m, … for a phase that
 *     started at step p). The first check of the run has no previous
 *     partition and gives similarity null (a baseline); null or a similarity
 *     below `stable_threshold` resets the stable counter, and
 *     `patience` checks in a row at or above it switch to sparse at that
 *     step;
 *   - sparse: `sparse_steps` steps, cut short where the final dense part
 *     starts, then back to dense: the stable counter resets and the next
 *     check is `monitor_every` steps later (the previous partition stays as
 *     the reference: it is the one the sparse phase trained with);
 *   - the last `final_dense` steps (default 10% of the run, rounded up) are
 *     always dense: no check is due and no switch to sparse happens there.
 * `--schedule sparse`: dense until `sparse_from`, one switch to sparse
 * (MoE-fy) there, sparse to the end. `final_dense` does NOT apply: the
 * static-correlation baseline is "MoE from step --sparse-from to the end", and the final model is evaluated both dense and as an MoE
 * anyway, so a dense tail would only blur the comparison with SSD.
 * `--schedule dense`: dense throughout, no checks, no events.
 *
 * Monitor start (warm vs fresh k-means): the plain rule keeps the lower inertia of
 * a warm start (from the previous partition) and a fresh k-means++ start.
 * When the structure barely moves, both starts land on partitions of almost
 * equal inertia, and the fresh one can win by a hair while grouping the
 * neurons very differently (an ARI near 0.2 with the warm one), so the
 * measured similarity would stay low and the switch would rarely trigger,
 * although the structure did not change. `PartitionMonitor` therefore keeps
 * the warm partition unless the fresh one is better by more than
 * `fresh_margin` (relative inertia, default 1%): a fresh start still wins
 * when the structure really moved (or the warm start is stuck far from a
 * good partition), and such a win is what should read as "not stable".
 * On synthetic drifting clusters (tests/pipelines/train/schedule_test.ts,
 * 128 points, 8 experts, 8 seeds) this keeps ARI ≥ 0.9 at every check for
 * clear and moderately overlapping clusters; with noise as large as the
 * centres' spread, "keep the lower inertia" drops as low as ARI 0.70, the
 * 1% margin to 0.86 once (a fresh start 1.4% better than a poor first
 * reference; the warm start holds after it). The similarity the schedule
 * uses is the mean ARI over layers, as `ssd profile`'s `ari_mean`.
 */
import { checkExperts, defaultTopK } from "../../core/nn/moe_layout.ts";
import { ConfigError, SsdError } from "../../core/errors.ts";
import type { DistanceDevice } from "../../core/moe/balanced_kmeans.ts";
import { DEFAULT_FRESH_MARGIN, trackedPartition } from "../../core/moe/stability.ts";
import { adjustedRandIndex, type Labels } from "../../core/moe/partition.ts";
import { flagOf } from "../config.ts";

/** Which schedule `ssd train` runs. */
export type ScheduleKind = "ssd" | "sparse" | "dense";
/** A training phase. */
export type Phase = "dense" | "sparse";

/** The schedule's knobs (snake_case, the `ssd train` flag names with dashes). */
export interface ScheduleConfig {
  /** `--schedule`: ssd (switch on stability), sparse (static baseline) or dense. */
  schedule: ScheduleKind;
  /** Steps between monitor checks in a dense phase. */
  monitor_every: number;
  /** Similarity (partition ARI) at or above which a check counts as stable, in [0, 1]. */
  stable_threshold: number;
  /** Stable checks in a row that switch to sparse. */
  patience: number;
  /** Length of a sparse phase, in steps. */
  sparse_steps: number;
  /** Last steps of the run that are always dense; null: 10% of the run, rounded up. */
  final_dense: number | null;
  /** `--schedule sparse`: the step at which the model is MoE-fied; null: 10% of the run, rounded up. */
  sparse_from: number | null;
  /** Experts per FFN layer (divides d_ff). */
  experts: number;
  /** Experts each token uses in a sparse step; null: experts / 4 (at least 1). */
  top_k: number | null;
  /** The monitor keeps a fresh k-means start only when its inertia is lower by more than this share. */
  fresh_margin: number;
}

/** The schedule's defaults. */
export const DEFAULT_SCHEDULE_CONFIG: Readonly<ScheduleConfig> = Object.freeze({
  schedule: "ssd",
  monitor_every: 100,
  stable_threshold: 0.9,
  patience: 2,
  sparse_steps: 500,
  final_dense: null,
  sparse_from: null,
  experts: 16,
  top_k: null,
  fresh_margin: DEFAULT_FRESH_MARGIN,
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
  requireInt("monitor_every", c.monitor_every, 1);
  requireInt("patience", c.patience, 1);
  requireInt("sparse_steps", c.sparse_steps, 1);
  requireInt("experts", c.experts, 1);
  if (
    typeof c.stable_threshold !== "number" || !(c.stable_threshold >= 0 && c.stable_threshold <= 1)
  ) {
    throw new ConfigError(`--stable-threshold must be in [0, 1], got ${c.stable_threshold}`);
  }
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
  /** The similarity that triggered a switch to sparse; null for other switches. */
  similarity: number | null;
}

/** One monitor check. */
export interface MonitorCheck {
  /** Steps done at the check. */
  step: number;
  /** Similarity to the previous partition; null when there was none. */
  similarity: number | null;
  /** Stable checks in a row, this one included. */
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
  /** Format of this object. */
  version: 1;
  /** The resolved config (a resume checks it against the flags). */
  config: ResolvedSchedule;
  /** The next step `next` expects (steps done). */
  step: number;
  /** Current phase. */
  phase: Phase;
  /** Step at which the current phase started. */
  phase_start: number;
  /** In a sparse phase: the step at which it returns to dense (cut by final_dense); else null. */
  sparse_end: number | null;
  /** Current run of stable checks. */
  stable: number;
  /** Every switch so far. */
  history: SwitchEvent[];
  /** Every monitor check so far. */
  checks: MonitorCheck[];
}

/**
 * The SSD state machine. Call `next(step, similarity)` once per step, in
 * order, before running it; pass a similarity exactly when
 * `needsMonitor(step)` is true.
 */
export class SsdSchedule {
  readonly config: ResolvedSchedule;
  #step = 0;
  #phase: Phase = "dense";
  #phaseStart = 0;
  #sparseEnd: number | null = null;
  #stable = 0;
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
    if (state?.version !== 1 || !state.config) {
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
    if (state.phase === "sparse") {
      const limit = c.schedule === "ssd" ? c.steps - c.final_dense : c.steps;
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
    s.#history = state.history.map((e) => ({ ...e }));
    s.#checks = state.checks.map((e) => ({ ...e }));
    return s;
  }

  /** A JSON-safe copy of the state. */
  state(): ScheduleState {
    return {
      version: 1,
      config: { ...this.config },
      step: this.#step,
      phase: this.#phase,
      phase_start: this.#phaseStart,
      sparse_end: this.#sparseEnd,
      stable: this.#stable,
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

  /** In a sparse phase, the sparse steps still to run (the current one included once `next` returned it); else 0. */
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

  /** First step of the always-dense tail (`ssd` only; the run's length otherwise). */
  get finalDenseStart(): number {
    const c = this.config;
    return c.schedule === "ssd" ? c.steps - c.final_dense : c.steps;
  }

  /**
   * The phase of a step that is already planned (`step` < `this.step`),
   * from the history of switches.
   */
  phaseAt(step: number): Phase {
    if (!Number.isSafeInteger(step) || step < 0 || step >= this.#step) {
      throw new SsdError(
        `SsdSchedule.phaseAt: step ${step} is not planned yet (planned: 0..${this.#step - 1})`,
      );
    }
    let phase: Phase = "dense";
    for (const e of this.#history) {
      if (e.step > step) break;
      phase = e.to;
    }
    return phase;
  }

  /** Whether `next(step)` needs a similarity (a monitor check is due at this step). */
  needsMonitor(step: number): boolean {
    const c = this.config;
    // In a sparse phase no check is due, not even at its last step: the dense
    // phase that starts there has its first check monitor_every steps later.
    if (c.schedule !== "ssd" || step !== this.#step || this.#phase === "sparse") return false;
    if (step >= this.finalDenseStart) return false;
    const since = step - this.#phaseStart;
    return since > 0 && since % c.monitor_every === 0;
  }

  /**
   * Plans step `step` (which must be `this.step`): applies a due check's
   * similarity (a number, or null when there was no previous partition) and
   * returns the step's phase and the switches to apply before it.
   */
  next(step: number, similarity?: number | null): StepPlan {
    const c = this.config;
    if (step !== this.#step) {
      throw new SsdError(`SsdSchedule.next: expected step ${this.#step}, got ${step}`);
    }
    if (step >= c.steps) {
      throw new SsdError(`SsdSchedule.next: step ${step} is past the run's ${c.steps} steps`);
    }
    const due = this.needsMonitor(step);
    if (due && similarity === undefined) {
      throw new SsdError(`SsdSchedule.next: a monitor check is due at step ${step}`);
    }
    if (!due && similarity !== undefined) {
      throw new SsdError(`SsdSchedule.next: no monitor check is due at step ${step}`);
    }
    if (similarity !== undefined && similarity !== null && !Number.isFinite(similarity)) {
      throw new SsdError(`SsdSchedule.next: similarity must be finite or null, got ${similarity}`);
    }
    const events: SwitchEvent[] = [];
    const go = (to: Phase, sim: number | null) => {
      const e: SwitchEvent = { event: "switch", from: this.#phase, to, step, similarity: sim };
      events.push(e);
      this.#history.push(e);
      this.#phase = to;
      this.#phaseStart = step;
    };
    let check: MonitorCheck | null = null;

    if (c.schedule === "sparse") {
      if (this.#phase === "dense" && step >= c.sparse_from) {
        go("sparse", null);
        this.#sparseEnd = c.steps;
      }
    } else if (c.schedule === "ssd") {
      if (this.#phase === "sparse" && step >= this.#sparseEnd!) {
        go("dense", null);
        this.#sparseEnd = null;
        this.#stable = 0;
      }
      if (due) {
        const sim = similarity ?? null;
        this.#stable = sim !== null && sim >= c.stable_threshold ? this.#stable + 1 : 0;
        check = { step, similarity: sim, stable: this.#stable };
        this.#checks.push(check);
        if (this.#stable >= c.patience) {
          go("sparse", sim);
          this.#sparseEnd = Math.min(step + c.sparse_steps, this.finalDenseStart);
          this.#stable = 0;
        }
      }
    }
    this.#step = step + 1;
    return { phase: this.#phase, events, check };
  }
}

// ---------------------------------------------------------------- monitor

/**
 * Pattern similarity of two partitions of the same neurons: their
 * adjusted Rand index (1 = the same grouping up to expert relabelling).
 */
export function partitionSimilarity(prevLabels: Labels, labels: Labels): number {
  return adjustedRandIndex(prevLabels, labels);
}

/** Options of `PartitionMonitor`. */
export interface MonitorOptions {
  /** Experts per layer. */
  experts: number;
  /** Relative inertia margin a fresh start must beat the warm one by (default 0.01). */
  fresh_margin?: number;
  /** k-means iterations (default: balancedKMeans's). */
  iters?: number;
  /** Seed of the fresh k-means++ start (default 0). */
  seed?: number;
  /** Distance path (default "auto"). */
  distance?: DistanceDevice;
}

/** One layer's partition at a check. */
export interface LayerCheck {
  /** Neuron → expert, in original neuron order. */
  labels: Uint32Array;
  /** ARI with the previous partition (null at the first check). */
  similarity: number | null;
  /** Which start was kept. */
  start: "warm" | "fresh";
  /** Inertia of the kept partition. */
  inertia: number;
  /** Inertia of the warm run (null at the first check). */
  warm_inertia: number | null;
  /** Inertia of the fresh run. */
  fresh_inertia: number;
}

/** What a monitor check returns. */
export interface MonitorResult {
  /** Mean over layers of the ARI with the previous partitions (null at the first check). */
  similarity: number | null;
  /** Per layer. */
  layers: LayerCheck[];
}

/** Serializable monitor state: the reference partitions. */
export interface MonitorState {
  /** Per layer, the previous partition (original neuron order); null before the first check. */
  labels: number[][] | null;
}

/**
 * The schedule's monitor: per FFN layer, balanced k-means on the
 * L2-normalised `c_fc` rows, warm-started from the previous check's
 * partition; the fresh k-means++ run replaces it only when its inertia is
 * lower by more than `fresh_margin` (see the module comment). The
 * similarity fed to `SsdSchedule.next` is the mean ARI over layers.
 * `labels` is the latest partition: the one to MoE-fy with on a switch.
 */
export class PartitionMonitor {
  readonly experts: number;
  readonly freshMargin: number;
  #labels: Uint32Array[] | null = null;

  /** A monitor with no reference partition yet (or the one in `state`). */
  constructor(readonly options: MonitorOptions, state?: MonitorState) {
    requireInt("experts", options.experts, 1);
    this.experts = options.experts;
    this.freshMargin = options.fresh_margin ?? DEFAULT_SCHEDULE_CONFIG.fresh_margin;
    if (!(this.freshMargin >= 0 && this.freshMargin < 1)) {
      throw new ConfigError(`--fresh-margin must be in [0, 1), got ${this.freshMargin}`);
    }
    if (state?.labels) this.#labels = state.labels.map((l) => Uint32Array.from(l));
  }

  /** The latest partition per layer (null before the first check). */
  get labels(): readonly Uint32Array[] | null {
    return this.#labels;
  }

  /** A JSON-safe copy of the reference partitions. */
  state(): MonitorState {
    return { labels: this.#labels ? this.#labels.map((l) => Array.from(l)) : null };
  }

  /**
   * Partitions each layer's rows ((d_ff, d_model) row-major, original neuron
   * order) and compares them with the previous check's; the new partitions
   * become the reference.
   */
  async check(rows: Float32Array[], dff: number, dModel: number): Promise<MonitorResult> {
    const prev = this.#labels;
    if (prev && prev.length !== rows.length) {
      throw new ConfigError(
        `PartitionMonitor.check: ${rows.length} layers, the previous check had ${prev.length}`,
      );
    }
    const o = this.options;
    const layers: LayerCheck[] = [];
    for (const [l, r] of rows.entries()) {
      const kept = await trackedPartition(r, dff, dModel, this.experts, {
        warm: prev?.[l],
        fresh_margin: this.freshMargin,
        iters: o.iters,
        seed: o.seed,
        distance: o.distance,
      });
      const { labels, ...rest } = kept;
      layers.push({
        labels,
        similarity: prev ? partitionSimilarity(prev[l], labels) : null,
        ...rest,
      });
    }
    this.#labels = layers.map((x) => x.labels);
    const similarity = prev
      ? layers.reduce((a, x) => a + x.similarity!, 0) / Math.max(1, layers.length)
      : null;
    return { similarity, layers };
  }
}
