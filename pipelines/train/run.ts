/**
 * `ssd train`: GPT pre-training on the embedded corpus or `--data`, dense,
 * static sparse or with the SSD schedule — one loop for all three:
 *
 *   start (new or resumed) → per step: plan (monitor, switches), train
 *   (`./step.ts`, one host wait), record (metrics, evaluation, checkpoint)
 *   → finish (final evaluation and checkpoint, or a checkpoint on a signal).
 *
 * A switch to sparse MoE-fies the model in place (`./switch.ts`).
 * Checkpoints hold the weights, AdamW moments and the training state
 * (`./state.ts`), so `--resume` continues the run exactly: same batches,
 * phases, learning rates, losses.
 */
import { join } from "node:path";
import { paramCount } from "../../core/nn/config.ts";
import { SsdError } from "../../core/errors.ts";
import { lrAt } from "../../core/lr_schedule.ts";
import { type EvalResult, evaluateTokens } from "../../core/nn/token_nll.ts";
import { gpu } from "../../gpu/runtime.ts";
import { type AccountingSummary, emptyAccounting, summarizeAccounting } from "./accounting.ts";
import type { TrainConfig } from "./config.ts";
import { kernelFamilyShares, type ProfileShares } from "./kernel_profile.ts";
import type { FinalMetrics, StepMetrics } from "./metrics.ts";
import { readResumePoint } from "./resume.ts";
import { FINAL_CHECKPOINT, stepCheckpoint } from "./run_folder.ts";
import type { Phase, SwitchEvent } from "./schedule.ts";
import { type MonitorReading, readingsFor } from "./switch_rule.ts";
import { closeRun, type ResumePoint, saveCheckpoint, startRun, type TrainRun } from "./start.ts";
import { type StepResult, trainStep } from "./step.ts";
import { applyPartition, originalFcRows } from "./switch.ts";

/** Callbacks for progress display; all optional. */
export interface TrainHooks {
  /** After every step. */
  onStep?(m: StepMetrics, totalSteps: number): void;
  /** After every evaluation. */
  onEval?(step: number, r: EvalResult): void;
  /** Informational lines (resolved config, checkpoints written). */
  log?(line: string): void;
}

/** Options of `runTrain` beyond the config. */
export interface TrainOptions {
  /** Checkpoint file or run folder to continue from. */
  resume?: string | null;
  /** A new run into a folder holding another run's files replaces them (else it is refused). */
  force?: boolean;
  /** Time each kernel family with GPU timestamps (CPU fallback) over a few steps. */
  profile?: boolean;
  /** Progress callbacks. */
  hooks?: TrainHooks;
  /** Aborting saves a checkpoint at the current step, then returns (Ctrl-C). */
  signal?: AbortSignal;
}

/** What a run produced. */
export interface TrainSummary {
  /** The resolved config. */
  config: TrainConfig;
  /** Parameters of the model. */
  params: number;
  /** Step reached. */
  step: number;
  /** Tokens seen in total (including before a resume). */
  tokens: number;
  /** Wall time of this invocation's steps, seconds. */
  wall_s: number;
  /** Mean training throughput of this invocation's steps (evaluation and saving excluded). */
  tokens_per_s: number;
  /** Mean step time of this invocation, ms (evaluation and saving excluded). */
  ms_per_step: number;
  /** Final validation result on the whole validation split (null when interrupted). */
  val: EvalResult | null;
  /** Last training loss (NaN when no step ran). */
  final_loss: number;
  /** Checkpoints written. */
  checkpoints: string[];
  /** Whether the run stopped early on a signal. */
  interrupted: boolean;
  /** The checkpoint this invocation continued from (null: a new run). */
  resumed_from: string | null;
  /** The run was already complete: nothing was done. */
  complete: boolean;
  /** Share of step time per kernel family, with `profile`. */
  profile: ProfileShares | null;
  /** FFN FLOPs spent vs dense, steps and wall time per phase. */
  accounting: AccountingSummary;
  /** Switch events of the whole run. */
  switches: SwitchEvent[];
  /** Final validation loss as an MoE at the trained top-k (null for --schedule dense). */
  val_moe: (EvalResult & { k: number }) | null;
}

/** What this invocation measured, beside the run's own state. */
interface Progress {
  t0: number;
  stepMs: number;
  lastLoss: number;
  profile: ProfileShares | null;
  profileSteps: Set<number>;
}

/** What `planStep` decided: the phase, and the monitor's reading when a check ran. */
interface PlannedStep {
  phase: Phase;
  reading?: MonitorReading;
}

/** Trains per `config`; see the module comment. */
export async function runTrain(
  config: TrainConfig,
  opts: TrainOptions = {},
): Promise<TrainSummary> {
  const hooks = opts.hooks ?? {};
  const from = opts.resume ? await readResumePoint(opts.resume) : null;
  if (from?.checkpoint.final && from.state.step === config.steps) {
    return completeSummary(config, from);
  }
  const run = await startRun(config, { from, force: opts.force, log: hooks.log });
  const progress = startProgress(run, opts.profile ?? false);
  try {
    while (run.step < config.steps && !opts.signal?.aborted) {
      const plan = await planStep(run, hooks);
      const batch = { ...run.sampler.next(), B: config.batch_size, T: config.ctx };
      const r = await profiled(run, progress, () =>
        trainStep(run.model, run.optimizer, batch, {
          phase: plan.phase,
          lr: lrAt(run.step, run.lr),
          topK: run.shape.top_k,
          gradClip: config.grad_clip,
        }));
      await recordStep(run, plan, r, progress, hooks);
    }
    return await finishRun(run, progress, opts);
  } finally {
    closeRun(run);
  }
}

function startProgress(run: TrainRun, profile: boolean): Progress {
  return {
    t0: performance.now(),
    stepMs: 0,
    lastLoss: NaN,
    profile: null,
    // A few steps after the start, when the pipelines are compiled and the pool is warm.
    profileSteps: new Set(profile ? [2, 3, 4].map((d) => run.startStep + d) : []),
  };
}

/**
 * The schedule before a step: a monitor check when due, then the step's
 * phase and its switches (a switch to sparse MoE-fies the model now, with
 * the monitor's reference partition, warm-started from the previous experts).
 */
async function planStep(run: TrainRun, hooks: TrainHooks): Promise<PlannedStep> {
  const { config: c, model, monitor, accounting, plan } = run;
  let reading: MonitorReading | undefined;
  if (plan.needsMonitor(run.step)) {
    const tm = performance.now();
    reading = await monitor.read(model, plan.phase, readingsFor(c.switch_rule, plan.phase), {
      optimizer: run.optimizer,
      probe: run.probe,
      evalBatch: c.eval_batch,
    });
    accounting.addOverhead("monitor", performance.now() - tm);
  }
  const next = plan.next(run.step, reading);
  for (const ev of next.events) {
    // A switch without a check (the static baseline, a mixed tail) partitions now.
    if (ev.to === "sparse") await formExperts(run, ev.reason !== "stable");
    run.metrics.add(ev);
    hooks.log?.(
      `step ${ev.step}: ${ev.from} -> ${ev.to} (${ev.reason}` +
        (ev.similarity === null ? ")" : `, similarity ${ev.similarity.toFixed(3)})`),
    );
  }
  return { phase: next.phase, reading };
}

/**
 * MoE-fies the model with the monitor's reference partition, after
 * partitioning the current weights first when `repartition` (warm-started
 * from the previous experts); timed as the run's "moefy" overhead.
 */
async function formExperts(run: TrainRun, repartition: boolean): Promise<void> {
  const { config: c, model, monitor } = run;
  const tm = performance.now();
  if (repartition) await monitor.check(await originalFcRows(model), c.d_ff, c.d_model);
  await applyPartition(model, run.optimizer, [...monitor.labels!]);
  run.accounting.addOverhead("moefy", performance.now() - tm);
}

/** Runs `fn` (one step), timing its kernels by family on the profiled steps. */
async function profiled(
  run: TrainRun,
  p: Progress,
  fn: () => Promise<StepResult>,
): Promise<StepResult> {
  const rec = gpu().recorder;
  const on = p.profileSteps.has(run.step) && rec.setProfiling(true);
  const r = await fn();
  if (on) {
    rec.setProfiling(false);
    p.profile = kernelFamilyShares(await rec.takeProfile(), p.profile);
  }
  return r;
}

/** After a step: its metrics line, an evaluation and a checkpoint when due. */
async function recordStep(
  run: TrainRun,
  { phase, reading }: PlannedStep,
  r: StepResult,
  p: Progress,
  hooks: TrainHooks,
): Promise<void> {
  const c = run.config;
  if (!Number.isFinite(r.loss)) {
    throw new SsdError(
      `Training diverged at step ${run.step}: loss is ${r.loss}: lower --lr or check the data`,
    );
  }
  const lr = lrAt(run.step, run.lr);
  run.step++;
  run.tokensSeen += c.batch_size * c.ctx;
  p.stepMs += r.ms;
  p.lastLoss = r.loss;
  const m: StepMetrics = {
    step: run.step,
    phase,
    loss: r.loss,
    lr,
    grad_norm: r.norm,
    tokens_per_s: (c.batch_size * c.ctx) / (r.ms / 1000),
    ms_per_step: r.ms,
    ...run.accounting.addStep(phase, r.ms),
  };
  if (phase === "dense") m.act_ratio = r.actRatio;
  if (reading) m.similarity = reading.similarity;
  for (const k of ["overlap", "coverage", "moe_gap"] as const) {
    const v = reading?.[k];
    if (v !== null && v !== undefined) m[k] = v;
  }
  if (phase === "sparse") m.expert_load = r.load;
  const before = (every: number) => every > 0 && run.step % every === 0 && run.step < c.steps;
  if (before(c.eval_every)) {
    const tokens = run.data.val.subarray(0, Math.min(run.data.val.length, c.eval_tokens + 1));
    const v = await evaluateTokens(run.model, tokens, c.eval_batch);
    m.val_loss = v.nll;
    hooks.onEval?.(run.step, v);
  }
  run.metrics.add(m);
  hooks.onStep?.(m, c.steps);
  if (run.metrics.pending >= 50 || m.val_loss !== undefined) await run.metrics.flush();
  if (before(c.save_every)) await save(run, stepCheckpoint(run.step), hooks);
}

async function save(run: TrainRun, name: string, hooks: TrainHooks): Promise<void> {
  // The metrics of the saved steps are on disk before the checkpoint that continues them.
  await run.metrics.flush();
  const path = await saveCheckpoint(run, name);
  hooks.log?.(`saved ${path}`);
}

/**
 * The end of an invocation: on a signal, a checkpoint of the steps done
 * (none when no step ran); else the final evaluation (dense, and as an MoE
 * once experts were formed), its metrics line and `final.safetensors`. A
 * signal during the final evaluation stops there, with a checkpoint.
 */
async function finishRun(run: TrainRun, p: Progress, opts: TrainOptions): Promise<TrainSummary> {
  const hooks = opts.hooks ?? {};
  const c = run.config;
  await run.metrics.flush();
  const wall = (performance.now() - p.t0) / 1000;
  let val: EvalResult | null = null;
  let valMoe: (EvalResult & { k: number }) | null = null;
  if (!opts.signal?.aborted) {
    const tokens = c.val_tokens === null
      ? run.data.val
      : run.data.val.subarray(0, Math.min(run.data.val.length, c.val_tokens + 1));
    const formed = run.model.moe && run.plan.history.some((e) => e.to === "sparse");
    // The partition and routers rebuilt from the final weights (warm from the last experts).
    if (formed && c.schedule === "ssd" && c.ending === "refit") await formExperts(run, true);
    hooks.log?.(`final evaluation on ${tokens.length.toLocaleString("en-US")} tokens`);
    val = await evaluateTokens(run.model, tokens, c.eval_batch);
    hooks.onEval?.(run.step, val);
    // Experts are formed at a switch to sparse: only then is the MoE view meaningful.
    if (!opts.signal?.aborted && formed) {
      const k = run.shape.top_k;
      valMoe = { k, ...(await evaluateTokens(run.model, tokens, c.eval_batch, k)) };
    }
  }
  const interrupted = opts.signal?.aborted ?? false;
  if (interrupted) {
    val = valMoe = null;
    // No step ran, or the save cadence has just written this step's checkpoint.
    const saved = run.checkpoints.at(-1) === join(c.out, stepCheckpoint(run.step));
    if (run.step > run.startStep && !saved) await save(run, stepCheckpoint(run.step), hooks);
  } else {
    const final: FinalMetrics = {
      step: run.step,
      phase: run.plan.phase,
      val_loss: val!.nll,
      val_bpb: val!.bpb,
      final: true,
    };
    if (valMoe) Object.assign(final, { val_loss_moe: valMoe.nll, top_k: valMoe.k });
    run.metrics.add(final);
    await save(run, FINAL_CHECKPOINT, hooks);
  }
  const ran = run.step - run.startStep;
  const tokensRan = ran * c.batch_size * c.ctx;
  return {
    config: c,
    params: paramCount(run.model.config),
    step: run.step,
    tokens: run.tokensSeen,
    wall_s: wall,
    tokens_per_s: ran > 0 ? tokensRan / (p.stepMs / 1000) : 0,
    ms_per_step: ran > 0 ? p.stepMs / ran : 0,
    val,
    final_loss: p.lastLoss,
    checkpoints: run.checkpoints,
    interrupted,
    resumed_from: run.resumedFrom,
    complete: false,
    profile: p.profile,
    accounting: run.accounting.summary(),
    switches: [...run.plan.history],
    val_moe: valMoe,
  };
}

/** The summary of a run that was already complete: read from its final checkpoint. */
function completeSummary(config: TrainConfig, from: ResumePoint): TrainSummary {
  const st = from.state;
  return {
    config,
    params: paramCount(config),
    step: st.step,
    tokens: st.tokens_seen,
    wall_s: 0,
    tokens_per_s: 0,
    ms_per_step: 0,
    val: null,
    final_loss: NaN,
    checkpoints: [],
    interrupted: false,
    resumed_from: from.checkpoint.path,
    complete: true,
    profile: null,
    accounting: summarizeAccounting(st.accounting ?? emptyAccounting()),
    switches: [...(st.phase_history ?? [])],
    val_moe: null,
  };
}
