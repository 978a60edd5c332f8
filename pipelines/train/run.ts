/**
 * `ssd train`: GPT pre-training on the embedded corpus or `--data`, dense,
 * static sparse or with the SSD schedule (SPEC 6) — one loop for all three.
 *
 * One step = upload a batch, forward, backward, clip, AdamW, and ONE host
 * wait that reads the loss, the gradient norm and the per-layer statistics
 * together. Each step runs in a `tidyAsync` scope, so its activations and
 * gradients return to the pool at the end of the step. Between steps the
 * schedule (`./schedule.ts`) may ask for a partition check or a
 * switch; a switch to sparse MoE-fies the model in place
 * (`./switch.ts`) and sparse steps run each FFN on its tokens'
 * top-k experts, with AdamW leaving experts that got no token untouched.
 * Checkpoints hold the weights, AdamW moments and the training state (step,
 * data sampler, schedule, monitor, accounting, config), so `--resume`
 * continues the run exactly: same batches, phases, learning rates, losses.
 */
import { TOKENIZER_ID } from "../../core/tokenizer.ts";
import { BatchSampler, type Dataset, loadDataset, type SamplerState } from "../../core/data.ts";
import { ConfigError, SsdError } from "../../core/errors.ts";
import { paramCount } from "../../core/nn/config.ts";
import { GPT } from "../../core/nn/gpt.ts";
import { loadGPT, saveGPT } from "../../core/nn/gpt_checkpoint.ts";
import { lrAt, type LrSchedule } from "../../core/lr_schedule.ts";
import { AdamW } from "../../core/optim/adamw.ts";
import { gradClip } from "../../core/optim/clip.ts";
import { Rng } from "../../core/rng.ts";
import { tidyAsync } from "../../core/scope.ts";
import { backward } from "../../core/tape.ts";
import { readAll, type Tensor, tensor } from "../../core/tensor.ts";
import { autotuneMatmul } from "../../gpu/autotune.ts";
import { initGpu } from "../../gpu/runtime.ts";
import { type EvalResult, evaluateTokens } from "../../core/nn/token_nll.ts";
import { join } from "node:path";
import { modelConfigOf, type TrainConfig } from "./config.ts";
import { kernelFamilyShares, type ProfileShares } from "./kernel_profile.ts";
import {
  type AccountingState,
  type AccountingSummary,
  type FfnShape,
  type MonitorState,
  PartitionMonitor,
  RunAccounting,
  type ScheduleConfig,
  type ScheduleKind,
  type ScheduleState,
  SsdSchedule,
  type SwitchEvent,
} from "./schedule.ts";
import { applyPartition, identityLayout, originalFcRows } from "./switch.ts";
import type { ExpertMask } from "../../gpu/kernels/adamw.ts";

/** One line of metrics.jsonl (SPEC 7 keys). */
export interface StepMetrics {
  /** Steps done, this one included. */
  step: number;
  /** The step's phase. */
  phase: "dense" | "sparse";
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
  /** Sparse steps: per layer, the tokens routed to each expert. */
  expert_load?: number[][];
}

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
  /** Last training loss. */
  final_loss: number;
  /** Checkpoints written. */
  checkpoints: string[];
  /** Whether the run stopped early on a signal. */
  interrupted: boolean;
  /** Share of step time per kernel family, with `profile`. */
  profile: ProfileShares | null;
  /** FFN FLOPs spent vs dense, steps and wall time per phase. */
  accounting: AccountingSummary;
  /** Switch events of the whole run. */
  switches: SwitchEvent[];
  /** Final validation loss as an MoE at the trained top-k (null for --schedule dense). */
  val_moe: (EvalResult & { k: number }) | null;
}

/** Training state saved as `ssd.train`. */
interface TrainState {
  step: number;
  tokens_seen: number;
  phase: "dense" | "sparse";
  phase_history: SwitchEvent[];
  schedule: ScheduleState;
  accounting: AccountingState;
  monitor: MonitorState;
  sampler: SamplerState;
  lr_schedule: LrSchedule;
  optimizer_step: number;
  tokenizer: string;
  data_source: string;
  config: TrainConfig;
}

/** Finds the checkpoint to resume from: a file, or the newest checkpoint in a run folder. */
export async function resolveResumePath(path: string): Promise<string> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    throw new ConfigError(`Cannot resume from ${path}: no such file or folder`);
  }
  if (info.isFile) return path;
  let best: { step: number; file: string } | null = null;
  for await (const e of Deno.readDir(path)) {
    const m = /^ckpt-(\d+)\.safetensors$/.exec(e.name);
    const step = m ? Number(m[1]) : e.name === "final.safetensors" ? Infinity : -1;
    if (step >= 0 && (!best || step > best.step)) best = { step, file: join(path, e.name) };
  }
  if (!best) throw new ConfigError(`Cannot resume from ${path}: the folder holds no checkpoint`);
  return best.file;
}

/** Reads the training config saved in a checkpoint (for `--resume`). */
export async function savedTrainConfig(path: string): Promise<TrainConfig> {
  const { readHeader, metaJson, META_TRAIN } = await import("../../core/checkpoint.ts");
  const header = await readHeader(path);
  const train = metaJson(header, META_TRAIN, true)!;
  if (!train.config || typeof train.config !== "object") {
    throw new ConfigError(`Cannot resume from ${path}: it holds no training config`);
  }
  return train.config as TrainConfig;
}

async function writeMetrics(path: string, lines: string[], append: boolean): Promise<void> {
  if (lines.length === 0 && append) return;
  await Deno.writeTextFile(path, lines.map((l) => l + "\n").join(""), { append });
}

/** Keeps the metrics of steps up to `step` (a resumed run rewrites what follows). */
async function truncateMetrics(path: string, step: number): Promise<void> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return;
  }
  const kept = text.split("\n").filter((l) => {
    if (!l.trim()) return false;
    try {
      return (JSON.parse(l).step ?? 0) <= step;
    } catch {
      return false;
    }
  });
  await writeMetrics(path, kept, false);
}

/** Trains per `config`; see the module comment. */
export async function runTrain(
  config: TrainConfig,
  opts: TrainOptions = {},
): Promise<TrainSummary> {
  const hooks = opts.hooks ?? {};
  const data: Dataset = loadDataset({
    data: config.data ?? undefined,
    val: config.val ?? undefined,
  });
  const modelConfig = modelConfigOf(config);
  const g = await initGpu();
  // Picks the matmul design for this adapter (a short trial the first time, then the disk cache).
  await autotuneMatmul(g);

  const schedule: LrSchedule = {
    maxLr: config.lr,
    minLr: config.min_lr,
    warmup: Math.min(config.warmup, config.steps),
    total: config.steps,
  };
  // The schedule resolves its run-dependent defaults (top_k = E/4, final_dense, sparse_from).
  let plan = new SsdSchedule(scheduleConfigOf(config), { steps: config.steps, d_ff: config.d_ff });
  const ffnShape: FfnShape = {
    tokens: config.batch_size * config.ctx,
    d_model: config.d_model,
    d_ff: config.d_ff,
    n_layer: config.n_layer,
    experts: plan.config.experts,
    top_k: plan.config.top_k,
  };
  let accounting = new RunAccounting(ffnShape);
  let monitor = new PartitionMonitor({
    experts: plan.config.experts,
    fresh_margin: config.fresh_margin,
    seed: config.seed,
  });
  let model: GPT;
  let sampler: BatchSampler;
  let step = 0;
  let tokensSeen = 0;
  const resumePath = opts.resume ? await resolveResumePath(opts.resume) : null;
  let optimizer: AdamW;
  if (resumePath) {
    const loaded = await loadGPT(resumePath, { optimizer: true });
    const st = loaded.train as unknown as TrainState | null;
    if (!st || typeof st.step !== "number" || !st.sampler) {
      throw new ConfigError(`Cannot resume from ${resumePath}: it holds no training state`);
    }
    model = loaded.model;
    step = st.step;
    if (st.schedule) {
      plan = SsdSchedule.fromState(st.schedule);
      accounting = new RunAccounting(ffnShape, st.accounting);
      monitor = new PartitionMonitor(monitor.options, st.monitor);
    }
    tokensSeen = st.tokens_seen;
    sampler = BatchSampler.fromState(
      data.train,
      { batch: config.batch_size, ctx: config.ctx },
      st.sampler,
    );
    optimizer = makeOptimizer(model, config);
    optimizer.loadState({ step: st.optimizer_step, tensors: loaded.moments! });
    for (const t of Object.values(loaded.moments!)) t.release();
    hooks.log?.(`resumed from ${resumePath} at step ${step}`);
  } else {
    const moe = config.schedule === "dense"
      ? null
      : identityLayout(modelConfig, ffnShape.experts, ffnShape.top_k);
    model = GPT.init(modelConfig, new Rng(config.seed), moe);
    sampler = new BatchSampler(data.train, {
      batch: config.batch_size,
      ctx: config.ctx,
      seed: config.seed + 1,
    });
    optimizer = makeOptimizer(model, config);
  }

  hooks.log?.(`config ${JSON.stringify(config)}`);
  hooks.log?.(
    `model ${paramCount(modelConfig).toLocaleString("en-US")} parameters; data ${data.source}`,
  );
  await Deno.mkdir(config.out, { recursive: true });
  const metricsPath = join(config.out, "metrics.jsonl");
  if (resumePath) await truncateMetrics(metricsPath, step);
  else await writeMetrics(metricsPath, [], false);

  const params = [...model.params.values()];
  const B = config.batch_size;
  const T = config.ctx;
  const evalTokens = data.val.subarray(0, Math.min(data.val.length, config.eval_tokens + 1));
  const finalTokens = config.val_tokens === null
    ? data.val
    : data.val.subarray(0, Math.min(data.val.length, config.val_tokens + 1));
  const checkpoints: string[] = [];
  const trainState = (): TrainState => ({
    step,
    tokens_seen: tokensSeen,
    phase: plan.phase,
    phase_history: [...plan.history],
    schedule: plan.state(),
    accounting: accounting.state(),
    monitor: monitor.state(),
    sampler: sampler.state(),
    lr_schedule: schedule,
    optimizer_step: optimizer.stepCount,
    tokenizer: TOKENIZER_ID,
    data_source: data.source,
    config,
  });
  const save = async (name: string) => {
    const path = join(config.out, name);
    await saveGPT(path, model, { optimizer, train: { ...trainState() } });
    checkpoints.push(path);
    hooks.log?.(`saved ${path}`);
  };

  let pending: string[] = [];
  let lastLoss = NaN;
  let profile: ProfileShares | null = null;
  const profileSteps = opts.profile ? new Set([step + 2, step + 3, step + 4]) : new Set<number>();
  const startStep = step;
  const t0 = performance.now();
  let stepMs = 0; // time in training steps only (evaluation and saving excluded)
  let interrupted = false;
  try {
    while (step < config.steps) {
      if (opts.signal?.aborted) {
        interrupted = true;
        break;
      }
      // The schedule: a stability check when due, then this step's phase and switches.
      let similarity: number | null | undefined;
      if (plan.needsMonitor(step)) {
        const tm = performance.now();
        similarity = (await monitor.check(await originalFcRows(model), config.d_ff, config.d_model))
          .similarity;
        accounting.addOverhead("monitor", performance.now() - tm);
      }
      const next = plan.next(step, similarity);
      for (const ev of next.events) {
        if (ev.to === "sparse") {
          const tm = performance.now();
          // The static baseline switches without a check: partition now.
          if (!monitor.labels) {
            await monitor.check(await originalFcRows(model), config.d_ff, config.d_model);
          }
          await applyPartition(model, optimizer, [...monitor.labels!]);
          accounting.addOverhead("moefy", performance.now() - tm);
        }
        pending.push(JSON.stringify(ev));
        hooks.log?.(
          `step ${ev.step}: ${ev.from} -> ${ev.to}` +
            (ev.similarity === null ? "" : ` (similarity ${ev.similarity.toFixed(3)})`),
        );
      }
      const phase = next.phase;
      const lr = lrAt(step, schedule);
      const batch = sampler.next();
      const profiling = profileSteps.has(step) && g.recorder.setProfiling(true);
      const ts = performance.now();
      const { loss, norm, actRatio, load } = await tidyAsync(async () => {
        const x = tensor(batch.x, [B, T], { dtype: "u32" });
        const y = tensor(batch.y, [B, T], { dtype: "u32" });
        const counts: Tensor[] = [];
        const out = model.forward(x, y, {
          actRatio: phase === "dense",
          topK: phase === "sparse" ? ffnShape.top_k : undefined,
          onExpertCounts: (l, c) => (counts[l] = c),
        });
        backward(out.loss!);
        const clip = gradClip(params, config.grad_clip > 0 ? config.grad_clip : Infinity);
        optimizer.step(lr, clip.factor, expertMasks(model, counts));
        optimizer.zeroGrad();
        // The step's one host wait: loss, gradient norm, activation ratios and expert loads.
        const r = out.actRatio.length;
        const [l, n, ...rest] = await readAll([out.loss!, clip.norm, ...out.actRatio, ...counts]);
        return {
          loss: l[0],
          norm: n[0],
          actRatio: rest.slice(0, r).map((v) => v[0]),
          load: rest.slice(r).map((v) => Array.from(v)),
        };
      });
      const ms = performance.now() - ts;
      stepMs += ms;
      if (profiling) {
        g.recorder.setProfiling(false);
        profile = kernelFamilyShares(await g.recorder.takeProfile(), profile);
      }
      if (!Number.isFinite(loss)) {
        throw new SsdError(
          `Training diverged at step ${step}: loss is ${loss}: lower --lr or check the data`,
        );
      }
      step++;
      tokensSeen += B * T;
      lastLoss = loss;
      const m: StepMetrics = {
        step,
        phase,
        loss,
        lr,
        grad_norm: norm,
        tokens_per_s: (B * T) / (ms / 1000),
        ms_per_step: ms,
        ...accounting.addStep(phase, ms),
      };
      if (phase === "dense") m.act_ratio = actRatio;
      if (similarity !== undefined) m.similarity = similarity;
      if (phase === "sparse") m.expert_load = load;
      const evalNow = config.eval_every > 0 && step % config.eval_every === 0 &&
        step < config.steps;
      if (evalNow) {
        const r = await evaluateTokens(model, evalTokens, config.eval_batch);
        m.val_loss = r.nll;
        hooks.onEval?.(step, r);
      }
      pending.push(JSON.stringify(m));
      hooks.onStep?.(m, config.steps);
      if (pending.length >= 50 || evalNow) {
        await writeMetrics(metricsPath, pending, true);
        pending = [];
      }
      if (config.save_every > 0 && step % config.save_every === 0 && step < config.steps) {
        await writeMetrics(metricsPath, pending, true);
        pending = [];
        await save(`ckpt-${step}.safetensors`);
      }
    }
    await writeMetrics(metricsPath, pending, true);
    pending = [];
    const wall = (performance.now() - t0) / 1000;
    let val: EvalResult | null = null;
    let valMoe: (EvalResult & { k: number }) | null = null;
    if (interrupted) {
      if (step > startStep) await save(`ckpt-${step}.safetensors`);
    } else {
      val = await evaluateTokens(model, finalTokens, config.eval_batch);
      hooks.onEval?.(step, val);
      const final: Record<string, unknown> = {
        step,
        phase: plan.phase,
        val_loss: val.nll,
        val_bpb: val.bpb,
        final: true,
      };
      // Experts are formed at a switch to sparse: only then is the MoE view meaningful.
      if (model.moe && plan.history.some((e) => e.to === "sparse")) {
        const k = ffnShape.top_k;
        valMoe = { k, ...(await evaluateTokens(model, finalTokens, config.eval_batch, k)) };
        final.val_loss_moe = valMoe.nll;
        final.top_k = k;
      }
      await writeMetrics(metricsPath, [JSON.stringify(final)], true);
      await save("final.safetensors");
    }
    const ran = step - startStep;
    return {
      config,
      params: paramCount(modelConfig),
      step,
      tokens: tokensSeen,
      wall_s: wall,
      tokens_per_s: ran > 0 ? (ran * B * T) / (stepMs / 1000) : 0,
      ms_per_step: ran > 0 ? stepMs / ran : 0,
      val,
      final_loss: lastLoss,
      checkpoints,
      interrupted,
      profile,
      accounting: accounting.summary(),
      switches: [...plan.history],
      val_moe: valMoe,
    };
  } finally {
    optimizer.dispose();
    model.release();
  }
}

/** The schedule part of a train config. */
export function scheduleConfigOf(c: TrainConfig): ScheduleConfig {
  return {
    schedule: c.schedule as ScheduleKind,
    monitor_every: c.monitor_every,
    stable_threshold: c.stable_threshold,
    patience: c.patience,
    sparse_steps: c.sparse_steps,
    final_dense: c.final_dense,
    sparse_from: c.sparse_from,
    experts: c.experts,
    top_k: c.top_k,
    fresh_margin: c.fresh_margin,
  };
}

/**
 * AdamW masks of a sparse step: in each MoE layer, the elements of experts
 * that received no token (c_fc rows, c_fc.bias entries, c_proj columns,
 * router rows) keep their weights and moments.
 */
function expertMasks(model: GPT, counts: Tensor[]): Map<Tensor, ExpertMask> | undefined {
  if (!model.moe || counts.length === 0) return undefined;
  const { d_ff: F, d_model: C } = model.config;
  const s = F / model.moe.experts;
  const masks = new Map<Tensor, ExpertMask>();
  counts.forEach((c, l) => {
    const h = `transformer.h.${l}.mlp.`;
    const set = (name: string, modulo: number, divisor: number) => {
      const p = model.params.get(h + name);
      if (p) masks.set(p, { counts: c.buffer, modulo, divisor });
    };
    set("c_fc.weight", F * C, s * C);
    set("c_fc.bias", F, s);
    set("c_proj.weight", F, s);
    set("router.weight", model.moe!.experts * C, C);
  });
  return masks;
}

function makeOptimizer(model: GPT, c: TrainConfig): AdamW {
  return new AdamW([...model.params.values()], {
    lr: c.lr,
    betas: [c.beta1, c.beta2],
    eps: 1e-8,
    weightDecay: c.weight_decay,
  });
}
