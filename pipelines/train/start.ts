/**
 * Starting a training run: a new one from its config, or one continued from
 * a checkpoint, as one `TrainRun` that the loop in `./run.ts` advances. The
 * cheap refusals come first (the config, the adapter's buffer limits, the
 * data), then the folder is locked and prepared, then the model is built or
 * loaded. A resume restores the weights, AdamW moments, data order,
 * schedule, monitor and accounting; the schedule and the learning rate are
 * re-planned when the run's length or their flags changed.
 */
import { dirname, join, resolve } from "node:path";
import { BatchSampler, type Dataset, loadDataset } from "../../core/data.ts";
import { extendLrSchedule, type LrSchedule } from "../../core/lr_schedule.ts";
import { paramCount } from "../../core/nn/config.ts";
import { GPT } from "../../core/nn/gpt.ts";
import { loadGPT, saveGPT } from "../../core/nn/gpt_checkpoint.ts";
import type { AdamW } from "../../core/optim/adamw.ts";
import { Rng } from "../../core/rng.ts";
import { TOKENIZER_ID } from "../../core/tokenizer.ts";
import { autotuneMatmul } from "../../gpu/autotune.ts";
import { initGpu } from "../../gpu/runtime.ts";
import { type FfnShape, RunAccounting } from "./accounting.ts";
import { modelConfigOf, optimizerConfigOf, scheduleConfigOf, type TrainConfig } from "./config.ts";
import { checkBufferLimits } from "./limits.ts";
import { METRICS_FILE, MetricsLog } from "./metrics.ts";
import { resumeChanges } from "./resume.ts";
import { type FolderLock, onDisk, openRunFolder, runCheckpoints } from "./run_folder.ts";
import { PartitionMonitor } from "./monitor.ts";
import { SsdSchedule } from "./schedule.ts";
import { newRunId, type TrainState } from "./state.ts";
import { makeOptimizer } from "./step.ts";
import type { RunCheckpoint } from "./run_folder.ts";
import { identityLayout } from "./switch.ts";

/** Where a resume starts: a checkpoint and its training state. */
export interface ResumePoint {
  /** The checkpoint. */
  checkpoint: RunCheckpoint;
  /** Its `ssd.train`. */
  state: TrainState;
}

/** A run in progress: what the training loop reads and advances. */
export interface TrainRun {
  /** The config it trains under. */
  readonly config: TrainConfig;
  /** Train and validation tokens. */
  readonly data: Dataset;
  /** The model (its MoE layout changes at switches). */
  readonly model: GPT;
  /** AdamW over the model's parameters. */
  readonly optimizer: AdamW;
  /** The data order. */
  readonly sampler: BatchSampler;
  /** Which phase each step runs in. */
  readonly plan: SsdSchedule;
  /** The partition monitor behind the switches. */
  readonly monitor: PartitionMonitor;
  /** FLOP and time totals. */
  readonly accounting: RunAccounting;
  /** The learning rate of each step. */
  readonly lr: LrSchedule;
  /** Held-out tokens of the monitor's probe readings: the end of the validation split. */
  readonly probe: Uint8Array;
  /** The FFN's shape, for FLOPs and top-k. */
  readonly shape: FfnShape;
  /** Identity of the run, in each of its checkpoints. */
  readonly runId: string;
  /** The metrics.jsonl writer. */
  readonly metrics: MetricsLog;
  /** The checkpoint the run resumed from, or null. */
  readonly resumedFrom: string | null;
  /** Steps done when this invocation started. */
  readonly startStep: number;
  /** Steps done. */
  step: number;
  /** Tokens trained on, over all invocations. */
  tokensSeen: number;
  /** Checkpoints this invocation wrote. */
  checkpoints: string[];
  /** The folder's lock (released by `closeRun`). */
  readonly folder: FolderLock;
}

/** The learning-rate schedule a run continues with (see the module comment). */
function lrScheduleOf(c: TrainConfig, from: ResumePoint | null): LrSchedule {
  const planned = {
    maxLr: c.lr,
    minLr: c.min_lr,
    warmup: Math.min(c.warmup, c.steps),
    total: c.steps,
  };
  if (!from) return planned;
  const old = from.state.config;
  const sameRates = old.lr === c.lr && old.min_lr === c.min_lr && old.warmup === c.warmup;
  return sameRates ? extendLrSchedule(from.state.lr_schedule, from.state.step, c.steps) : planned;
}

type Parts = Pick<
  TrainRun,
  | "model"
  | "optimizer"
  | "sampler"
  | "plan"
  | "monitor"
  | "accounting"
  | "runId"
  | "step"
  | "tokensSeen"
>;

function freshParts(c: TrainConfig, data: Dataset, plan: SsdSchedule, shape: FfnShape): Parts {
  const moe = c.schedule === "dense" ? null : identityLayout(c, shape.experts, shape.top_k);
  const model = GPT.init(modelConfigOf(c), new Rng(c.seed), moe);
  return {
    model,
    optimizer: makeOptimizer(model, optimizerConfigOf(c)),
    sampler: new BatchSampler(data.train, { batch: c.batch_size, ctx: c.ctx, seed: c.seed + 1 }),
    plan,
    monitor: new PartitionMonitor({
      experts: shape.experts,
      top_k: shape.top_k,
      fresh_margin: c.fresh_margin,
      seed: c.seed,
    }),
    accounting: new RunAccounting(shape),
    runId: newRunId(),
    step: 0,
    tokensSeen: 0,
  };
}

/**
 * A resumed run's parts. `branch`: the run resumes from a checkpoint older
 * than its newest in the folder, so it continues under a new identity and
 * its later checkpoints are never taken for the new line's.
 */
async function resumedParts(
  c: TrainConfig,
  data: Dataset,
  from: ResumePoint,
  shape: FfnShape,
  branch: boolean,
): Promise<Parts> {
  const st = from.state;
  const sampler = BatchSampler.fromState(
    data.train,
    { batch: c.batch_size, ctx: c.ctx },
    st.sampler,
  );
  const loaded = await loadGPT(from.checkpoint.path, { optimizer: true });
  const optimizer = makeOptimizer(loaded.model, optimizerConfigOf(c));
  optimizer.loadState({ step: st.optimizer_step, tensors: loaded.moments! });
  for (const t of Object.values(loaded.moments!)) t.release();
  const monitorOpts = {
    experts: shape.experts,
    top_k: shape.top_k,
    fresh_margin: c.fresh_margin,
    seed: c.seed,
  };
  const run = { steps: c.steps, d_ff: c.d_ff };
  // Checkpoints of a run always carry the schedule; the fallbacks keep older ones loading.
  return {
    model: loaded.model,
    optimizer,
    sampler,
    plan: st.schedule
      ? SsdSchedule.fromState(st.schedule, { config: scheduleConfigOf(c), run })
      : new SsdSchedule(scheduleConfigOf(c), run),
    monitor: new PartitionMonitor(monitorOpts, st.schedule ? st.monitor : undefined),
    accounting: new RunAccounting(shape, st.schedule ? st.accounting : undefined),
    runId: st.run_id && !branch ? st.run_id : newRunId(),
    step: st.step,
    tokensSeen: st.tokens_seen,
  };
}

/** Checkpoints of the same run in the resume point's folder saved after it. */
async function laterCheckpoints(from: ResumePoint): Promise<string[]> {
  const { run_id, step } = from.checkpoint;
  const all = await runCheckpoints(dirname(from.checkpoint.path));
  return all.filter((c) => c.run_id === run_id && c.step > step).map((c) => c.path);
}

/** Options of `startRun`. */
export interface StartOptions {
  /** Where to continue from (null: a new run). */
  from: ResumePoint | null;
  /** A new run replaces another run's files in its folder. */
  force?: boolean;
  /** Informational lines. */
  log?(line: string): void;
}

/** Starts (or continues) a run of `config`; see the module comment. */
export async function startRun(config: TrainConfig, opts: StartOptions): Promise<TrainRun> {
  const { from, log } = opts;
  // The schedule resolves its run-dependent defaults (top_k = E/4, final_dense, sparse_from).
  const plan = new SsdSchedule(scheduleConfigOf(config), {
    steps: config.steps,
    d_ff: config.d_ff,
  });
  const shape: FfnShape = {
    tokens: config.batch_size * config.ctx,
    d_model: config.d_model,
    d_ff: config.d_ff,
    n_layer: config.n_layer,
    experts: plan.config.experts,
    top_k: plan.config.top_k,
  };
  const changes = from ? resumeChanges(from.state.config, config, from.state.step) : [];
  const g = await initGpu();
  checkBufferLimits(config, g.device.limits);
  const data = loadDataset({ data: config.data ?? undefined, val: config.val ?? undefined });
  // Picks the matmul design for this adapter (a short trial the first time, then the disk cache).
  await autotuneMatmul(g);
  const sameFolder = from !== null &&
    resolve(dirname(from.checkpoint.path)) === resolve(config.out);
  const folder = await openRunFolder(config.out, {
    resuming: sameFolder,
    force: opts.force ?? false,
    metricsFile: METRICS_FILE,
  });
  let parts: Parts | null = null;
  try {
    const branch = sameFolder && (await laterCheckpoints(from!)).length > 0;
    if (branch) log?.(`resuming from an older checkpoint: the run continues as a new line`);
    parts = from
      ? await resumedParts(config, data, from, shape, branch)
      : freshParts(config, data, plan, shape);
    const metrics = await MetricsLog.open(
      config.out,
      sameFolder ? parts.step : null,
      (what) => log?.(`metrics.jsonl: dropped ${what}`),
    );
    if (from) log?.(`resumed from ${from.checkpoint.path} at step ${parts.step}`);
    if (changes.length > 0) log?.(`resume is not exact: changed ${changes.join(", ")}`);
    log?.(`config ${JSON.stringify(config)}`);
    log?.(
      `model ${paramCount(parts.model.config).toLocaleString("en-US")} parameters; ` +
        `data ${data.source}`,
    );
    return {
      ...parts,
      config,
      data,
      lr: lrScheduleOf(config, from),
      probe: data.val.subarray(Math.max(0, data.val.length - config.probe_tokens - 1)),
      shape,
      metrics,
      resumedFrom: from?.checkpoint.path ?? null,
      startStep: parts.step,
      checkpoints: [],
      folder,
    };
  } catch (e) {
    parts?.optimizer.dispose();
    parts?.model.release();
    folder.release();
    throw e;
  }
}

/** The run's `ssd.train` now. */
function trainState(run: TrainRun): TrainState {
  return {
    run_id: run.runId,
    step: run.step,
    tokens_seen: run.tokensSeen,
    phase: run.plan.phase,
    phase_history: [...run.plan.history],
    schedule: run.plan.state(),
    accounting: run.accounting.state(),
    monitor: run.monitor.state(),
    sampler: run.sampler.state(),
    lr_schedule: run.lr,
    optimizer_step: run.optimizer.stepCount,
    tokenizer: TOKENIZER_ID,
    data_source: run.data.source,
    config: run.config,
  };
}

/** Writes a checkpoint `name` of the run into its folder (atomically). */
export async function saveCheckpoint(run: TrainRun, name: string): Promise<string> {
  const path = join(run.config.out, name);
  const train = { ...trainState(run) } as unknown as Record<string, unknown>;
  await onDisk(path, "write", () => saveGPT(path, run.model, { optimizer: run.optimizer, train }));
  run.checkpoints.push(path);
  return path;
}

/** Frees the run's GPU state and releases its folder. */
export function closeRun(run: TrainRun): void {
  run.optimizer.dispose();
  run.model.release();
  run.folder.release();
}
