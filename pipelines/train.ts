/**
 * `ssd train`: GPT pre-training on the embedded corpus or `--data`.
 *
 * One step = upload a batch, forward, backward, clip, AdamW, and ONE host
 * wait that reads the loss and the gradient norm together. Each step runs in
 * a `tidyAsync` scope, so its activations and gradients return to the pool at
 * the end of the step. Checkpoints hold the weights, AdamW moments and the
 * training state (step, data sampler, config), so `--resume` continues the
 * run exactly: same batches, same learning rates, same losses.
 */
import { TOKENIZER_ID } from "../core/tokenizer.ts";
import { BatchSampler, type Dataset, loadDataset, type SamplerState } from "../core/data.ts";
import { ConfigError, SsdError } from "../core/errors.ts";
import { paramCount } from "../core/nn/config.ts";
import { GPT } from "../core/nn/gpt.ts";
import { loadGPT, saveGPT } from "../core/nn/gpt_checkpoint.ts";
import { lrAt, type LrSchedule } from "../core/lr_schedule.ts";
import { AdamW } from "../core/optim/adamw.ts";
import { gradClip } from "../core/optim/clip.ts";
import { Rng } from "../core/rng.ts";
import { tidyAsync } from "../core/scope.ts";
import { backward } from "../core/tape.ts";
import { readAll, tensor } from "../core/tensor.ts";
import { autotuneMatmul } from "../gpu/autotune.ts";
import { initGpu } from "../gpu/runtime.ts";
import { type EvalResult, evaluateTokens } from "./evaluate.ts";
import { join } from "node:path";
import { modelConfigOf, type TrainConfig } from "./train_config.ts";
import { kernelFamilyShares, type ProfileShares } from "./profile_step.ts";

/** One line of metrics.jsonl (SPEC 7 keys). */
export interface StepMetrics {
  step: number;
  phase: "dense" | "sparse";
  loss: number;
  val_loss?: number;
  lr: number;
  grad_norm: number;
  tokens_per_s: number;
  ms_per_step: number;
  ffn_flops: number;
  ffn_flops_dense: number;
  /** Per FFN layer, the fraction of activations > 0 on this step's batch. */
  act_ratio: number[];
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
}

/** Training state saved as `ssd.train`. */
interface TrainState {
  step: number;
  tokens_seen: number;
  phase: "dense" | "sparse";
  phase_history: unknown[];
  sampler: SamplerState;
  lr_schedule: LrSchedule;
  optimizer_step: number;
  tokenizer: string;
  data_source: string;
  config: TrainConfig;
}

/** FFN FLOPs of one dense training step: 2 matmuls, 2 FLOPs per MAC, backward twice forward. */
export function ffnFlopsPerStep(c: TrainConfig): number {
  return 3 * 2 * 2 * c.batch_size * c.ctx * c.d_model * c.d_ff * c.n_layer;
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
  const { readHeader, metaJson, META_TRAIN } = await import("../core/checkpoint.ts");
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
    model = GPT.init(modelConfig, new Rng(config.seed));
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
  const flops = ffnFlopsPerStep(config);
  const evalTokens = data.val.subarray(0, Math.min(data.val.length, config.eval_tokens + 1));
  const checkpoints: string[] = [];
  const trainState = (): TrainState => ({
    step,
    tokens_seen: tokensSeen,
    phase: "dense",
    phase_history: [],
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
      const lr = lrAt(step, schedule);
      const batch = sampler.next();
      const profiling = profileSteps.has(step) && g.recorder.setProfiling(true);
      const ts = performance.now();
      const { loss, norm, actRatio } = await tidyAsync(async () => {
        const x = tensor(batch.x, [B, T], { dtype: "u32" });
        const y = tensor(batch.y, [B, T], { dtype: "u32" });
        const out = model.forward(x, y, { actRatio: true });
        backward(out.loss!);
        const clip = gradClip(params, config.grad_clip > 0 ? config.grad_clip : Infinity);
        optimizer.step(lr, clip.factor);
        optimizer.zeroGrad();
        // The step's one host wait: loss, gradient norm and activation ratios together.
        const [l, n, ...ratios] = await readAll([out.loss!, clip.norm, ...out.actRatio]);
        return { loss: l[0], norm: n[0], actRatio: ratios.map((r) => r[0]) };
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
        phase: "dense",
        loss,
        lr,
        grad_norm: norm,
        tokens_per_s: (B * T) / (ms / 1000),
        ms_per_step: ms,
        ffn_flops: flops,
        ffn_flops_dense: flops,
        act_ratio: actRatio,
      };
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
    if (interrupted) {
      if (step > startStep) await save(`ckpt-${step}.safetensors`);
    } else {
      val = await evaluateTokens(model, data.val, config.eval_batch);
      hooks.onEval?.(step, val);
      await writeMetrics(metricsPath, [
        JSON.stringify({ step, phase: "dense", val_loss: val.nll, val_bpb: val.bpb, final: true }),
      ], true);
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
    };
  } finally {
    optimizer.dispose();
    model.release();
  }
}

function makeOptimizer(model: GPT, c: TrainConfig): AdamW {
  return new AdamW([...model.params.values()], {
    lr: c.lr,
    betas: [c.beta1, c.beta2],
    eps: 1e-8,
    weightDecay: c.weight_decay,
  });
}
