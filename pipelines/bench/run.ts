/**
 * `ssd bench`: dense against MoE inference at each k, on one checkpoint.
 *
 * Rows: dense first, then the MoE view at each k (the MoE path even at
 * k = E, so that row measures the MoE kernels with every expert selected).
 * For a dense checkpoint `--experts E` MoE-fies it in memory first, as
 * `ssd moefy` does by default (balanced k-means on the c_fc rows, centroid
 * routers); an MoE checkpoint brings its own experts. Per row:
 *
 * - `ffn_flops_per_token`: forward FFN FLOPs per token summed over the
 *   layers, 2 per multiply-add. Dense 4·C·d_ff·L; MoE at k
 *   L·(2·C·E + 4·k·(d_ff/E)·C) (`moeFfnFlops`): the router, then k/E of the
 *   dense expert work.
 * - `val_loss`, `val_bpb`: `ssd eval`'s protocol (`evaluateTokens`) on the first
 *   `--val-tokens` tokens of the eval text (the embedded corpus's
 *   validation split, or all of `--data` as `ssd eval` reads it).
 * - `prefill`: full forwards over `batch` (the largest decode batch) prompts
 *   of `prompt_len` tokens: tokens/s, ms per forward, and the FFN's share of
 *   the GPU time (timestamp queries; FFN kernels are tagged `ffn/`).
 * - `decode`, at batch 1 and each `--batch`: after a prefill of the prompts
 *   (which samples the first token), `gen` cached decode steps, each token
 *   sampled on the GPU (temperature + top-k, seeded; `ssd generate`'s
 *   defaults) with the whole run recorded and read back once. `ms_per_token`
 *   is wall time per step (one token for each sequence), including the one
 *   read at the end; `ffn_ms_per_token` and `ffn_share` come from a separate
 *   profiled run (GPU time in `ffn/` kernels per step, and as a share of all
 *   GPU time of the steps).
 *
 * prompt_len + gen ≤ ctx, so every timed step is a cached step (no window
 * crop). Everything is warmed up once (pipelines compiled, pool filled),
 * then timed `--reps` times; the median is reported. Timings on a shared
 * software adapter are noisy: compare rows of one run, not across runs.
 */
import { ConfigError } from "../../core/errors.ts";
import { balancedKMeans } from "../../core/moe/balanced_kmeans.ts";
import { modelFcRows, moefyModel } from "../../core/moe/moefy.ts";
import { Decoder, DEFAULT_SAMPLING, FFN_PROFILE_TAG, tagFfn } from "../../core/nn/decode.ts";
import { GPT } from "../../core/nn/gpt.ts";
import { loadGPT } from "../../core/nn/gpt_checkpoint.ts";
import { moeFfnFlops } from "../../core/nn/moe_ffn.ts";
import { checkExperts } from "../../core/nn/moe_layout.ts";
import { keep, tidy } from "../../core/scope.ts";
import { noGrad } from "../../core/tape.ts";
import { tensor } from "../../core/tensor.ts";
import { autotuneMatmul } from "../../gpu/autotune.ts";
import type { KernelTimes } from "../../gpu/recorder.ts";
import { gpu, initGpu } from "../../gpu/runtime.ts";
import { loadEvalTokens, requireByteTokenizer, requirePositiveInt } from "../checks.ts";
import { evaluateTokens } from "../../core/nn/token_nll.ts";
import type { BenchJson, BenchRow, DecodeResult, PrefillResult } from "./json.ts";

export { benchJson } from "./json.ts";
export type { BenchJson, BenchRow, DecodeResult, PrefillResult } from "./json.ts";

/** What `ssd bench` measures. */
export interface BenchConfig {
  /** The checkpoint (.safetensors), dense or MoE. */
  checkpoint: string;
  /** Experts per token to bench; null: 1, 2, 4, … up to E, plus the checkpoint's top_k. */
  top_k: number[] | null;
  /** Decode batches besides 1 (the largest is also the prefill batch). */
  batch: number[];
  /** Prompt tokens per sequence; null: ctx / 2. */
  prompt_len: number | null;
  /** Timed decode steps per sequence; null: ctx − prompt_len. */
  gen: number | null;
  /** MoE-fy a dense checkpoint in memory into this many experts; null: none. */
  experts: number | null;
  /** Text file or folder for the loss (all of it); null: the embedded validation split. */
  data: string | null;
  /** Tokens scored for the loss (at most). */
  val_tokens: number;
  /** Timed repetitions (the median is reported). */
  reps: number;
}

/** Defaults of every `BenchConfig` field but the checkpoint. */
export const DEFAULT_BENCH_CONFIG: Readonly<Omit<BenchConfig, "checkpoint">> = Object.freeze({
  top_k: null,
  batch: [8],
  prompt_len: null,
  gen: null,
  experts: null,
  data: null,
  val_tokens: 32768,
  reps: 3,
});

/** Windows per forward of the loss evaluation. */
export const BENCH_EVAL_BATCH = 16;
/** Forwards recorded per timed prefill repetition (one host wait for all of them). */
export const PREFILL_FORWARDS = 4;

/** What `runBench` returns: the `--json` document's fields, plus where the loss came from. */
export interface BenchReport extends BenchJson {
  /** The loss's text (not in the JSON). */
  val_source: string;
  /** Tokens scored for the loss (not in the JSON). */
  val_tokens: number;
  /** Timed repetitions (not in the JSON). */
  reps: number;
}

/** Progress hooks of `runBench`. */
export interface BenchHooks {
  /** Called before each measurement with a short description. */
  onStage?(what: string): void;
}

/** The default k list: 1, 2, 4, … up to E, E itself, and the checkpoint's top_k. */
export function defaultTopKs(E: number, topK: number | null): number[] {
  const ks: number[] = [];
  for (let k = 1; k < E; k *= 2) ks.push(k);
  ks.push(E);
  if (topK !== null) ks.push(topK);
  return [...new Set(ks)].sort((a, b) => a - b);
}

/** Forward FFN FLOPs per token of the whole model (2 per multiply-add); `k` null = dense. */
export function benchFfnFlops(
  c: { d_model: number; d_ff: number; n_layer: number },
  E: number | null,
  k: number | null,
): number {
  if (E === null || k === null) return 4 * c.d_model * c.d_ff * c.n_layer;
  return c.n_layer * moeFfnFlops(1, c.d_model, c.d_ff, E, k);
}

function checkConfig(c: BenchConfig): void {
  requirePositiveInt("--val-tokens", c.val_tokens);
  requirePositiveInt("--reps", c.reps);
  if (c.prompt_len !== null) requirePositiveInt("--prompt-len", c.prompt_len);
  if (c.gen !== null) requirePositiveInt("--gen", c.gen);
  if (c.experts !== null) requirePositiveInt("--experts", c.experts);
  if (c.batch.length === 0) throw new ConfigError("--batch needs at least one batch size");
  for (const b of c.batch) requirePositiveInt("--batch", b);
  if (c.top_k !== null) {
    if (c.top_k.length === 0) throw new ConfigError("--top-k needs at least one k");
    for (const k of c.top_k) requirePositiveInt("--top-k", k);
  }
}

/**
 * MoE-fies a dense model in memory, as `ssd moefy` with its defaults
 * (method param, centroid router): per layer, balanced k-means of the
 * normalised c_fc rows into E experts (seed = layer), then `moefyModel`.
 * The dense model object must not be used afterwards.
 */
export async function moefyInMemory(model: GPT, E: number, topK: number): Promise<GPT> {
  const { d_ff: F, d_model: C } = model.config;
  checkExperts(E, topK, F);
  const rows = await modelFcRows(model);
  const labels: Uint32Array[] = [];
  for (const [l, fc] of rows.entries()) {
    labels.push((await balancedKMeans(fc, F, C, E, { seed: l, normalize: true })).labels);
  }
  return await moefyModel(model, labels, E, topK);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** FFN GPU ms and total GPU ms of a profile; null when nothing was timed. */
function ffnTimes(times: KernelTimes): { ffn: number; total: number } | null {
  let ffn = 0;
  let total = 0;
  for (const [name, t] of times) {
    total += t.ms;
    if (name.startsWith(FFN_PROFILE_TAG)) ffn += t.ms;
  }
  return total > 0 ? { ffn, total } : null;
}

/** `batch` prompts of `len` tokens taken at evenly spaced offsets of `tokens`. */
function prompts(tokens: Uint8Array, batch: number, len: number): number[][] {
  const span = tokens.length - len;
  return Array.from({ length: batch }, (_, b) => {
    const at = Math.floor((b * span) / batch);
    return Array.from(tokens.subarray(at, at + len));
  });
}

interface RowSpec {
  mode: "dense" | "moe";
  k: number | null;
  opts: { topK?: number; forceSparse?: boolean };
}

/** What one bench run measures, once the flags are checked against the checkpoint. */
interface BenchPlan {
  /** E of the MoE view (after an in-memory MoE-fication), null for dense only. */
  experts: number | null;
  /** MoE-fy the dense checkpoint into `experts` first. */
  moefy: boolean;
  /** The k of the MoE rows. */
  ks: number[];
  /** Prompt tokens and timed decode steps per sequence. */
  P: number;
  gen: number;
}

/** Checks the flags against the loaded checkpoint and the text; see `runBench`'s throws. */
function planBench(
  config: BenchConfig,
  loaded: Awaited<ReturnType<typeof loadGPT>>,
  text: { tokens: Uint8Array; source: string },
): BenchPlan {
  requireByteTokenizer(loaded, config.checkpoint);
  const c = loaded.config;
  const E: number | null = loaded.moe?.experts ?? null;
  if (loaded.moe && config.experts !== null && config.experts !== E) {
    throw new ConfigError(
      `${config.checkpoint} is an MoE checkpoint with ${E} experts: --experts ${config.experts} ` +
        `would re-cluster it; leave --experts out (or give ${E}), or bench its dense source`,
    );
  }
  if (!loaded.moe && config.experts === null && config.top_k !== null) {
    throw new ConfigError(
      `--top-k needs experts, and ${config.checkpoint} is dense: add --experts E to MoE-fy it ` +
        `in memory (E must divide d_ff ${c.d_ff})`,
    );
  }
  if (!loaded.moe && config.experts !== null && c.d_ff % config.experts !== 0) {
    throw new ConfigError(
      `--experts ${config.experts} does not divide d_ff ${c.d_ff}: choose a divisor of ${c.d_ff}`,
    );
  }
  const ks = E === null && config.experts === null
    ? []
    : config.top_k ?? defaultTopKs(E ?? config.experts!, loaded.moe?.top_k ?? null);
  const maxE = E ?? config.experts;
  if (maxE !== null) checkExperts(maxE, ks, c.d_ff);
  const P = config.prompt_len ?? Math.max(1, Math.floor(c.ctx / 2));
  const gen = config.gen ?? c.ctx - P;
  if (gen < 1 || P + gen > c.ctx) {
    throw new ConfigError(
      `--prompt-len ${P} + --gen ${gen} must be at most the context ${c.ctx} (and gen >= 1): ` +
        `bench times cached decode steps only`,
    );
  }
  if (text.tokens.length < P) {
    throw new ConfigError(
      `Eval data ${text.source} has ${text.tokens.length} tokens, fewer than --prompt-len ${P}`,
    );
  }
  const moefy = !loaded.moe && config.experts !== null;
  return { experts: moefy ? config.experts : E, moefy, ks, P, gen };
}

/** Loss, prefill and decode of one row. */
async function benchRow(
  model: GPT,
  spec: RowSpec,
  plan: BenchPlan,
  evalTokens: Uint8Array,
  batches: number[],
  config: BenchConfig,
  hooks: BenchHooks,
): Promise<BenchRow> {
  const label = spec.k === null ? "dense" : `k=${spec.k}`;
  hooks.onStage?.(`${label}: validation loss`);
  const loss = await evaluateTokens(model, evalTokens, BENCH_EVAL_BATCH, spec.opts.topK, spec.opts);
  hooks.onStage?.(`${label}: prefill`);
  const prefill = await benchPrefill(model, spec, evalTokens, batches.at(-1)!, plan.P, config.reps);
  const decode: DecodeResult[] = [];
  for (const B of batches) {
    hooks.onStage?.(`${label}: decode at batch ${B}`);
    decode.push(await benchDecode(model, spec, evalTokens, B, plan.P, plan.gen, config.reps));
  }
  return {
    mode: spec.mode,
    top_k: spec.k,
    ffn_flops_per_token: benchFfnFlops(model.config, plan.experts, spec.k),
    val_loss: loss.nll,
    val_bpb: loss.bpb,
    prefill,
    decode,
  };
}

/**
 * Benchmarks the checkpoint; see the module comment.
 *
 * @throws ConfigError for bad flags, a k outside 1..E, --top-k on a dense
 *   checkpoint without --experts, prompt_len + gen > ctx, too little text
 * @throws CheckpointError for a missing, corrupt or non-byte-level checkpoint
 */
export async function runBench(config: BenchConfig, hooks: BenchHooks = {}): Promise<BenchReport> {
  checkConfig(config);
  const text = loadEvalTokens(config.data);
  const evalTokens = text.tokens.subarray(0, Math.min(text.tokens.length, config.val_tokens + 1));
  if (evalTokens.length < 2) {
    throw new ConfigError(
      `Eval data ${text.source} has ${evalTokens.length} token: need at least 2 (one context, one scored)`,
    );
  }
  const g = await initGpu();
  await autotuneMatmul(g);
  const loaded = await loadGPT(config.checkpoint);
  let model = loaded.model;
  try {
    const plan = planBench(config, loaded, text);
    if (plan.moefy) {
      hooks.onStage?.(`MoE-fying into ${plan.experts} experts`);
      model = await moefyInMemory(model, plan.experts!, Math.max(1, plan.experts! >> 2));
    }
    const specs: RowSpec[] = [
      { mode: "dense", k: null, opts: {} },
      ...plan.ks.map((k): RowSpec => ({ mode: "moe", k, opts: { topK: k, forceSparse: true } })),
    ];
    const batches = [...new Set([1, ...config.batch])].sort((a, b) => a - b);
    const rows: BenchRow[] = [];
    for (const spec of specs) {
      rows.push(await benchRow(model, spec, plan, evalTokens, batches, config, hooks));
    }
    const c = loaded.config;
    return {
      checkpoint: config.checkpoint,
      experts: plan.experts,
      moefied: plan.moefy,
      model: {
        d_model: c.d_model,
        n_layer: c.n_layer,
        n_head: c.n_head,
        d_ff: c.d_ff,
        ctx: c.ctx,
        vocab: c.vocab,
      },
      prompt_len: plan.P,
      gen: plan.gen,
      device: g.dev.summary.name,
      rows,
      val_source: text.source,
      val_tokens: evalTokens.length - 1,
      reps: config.reps,
    };
  } finally {
    // The MoE-fied model shares the dense one's tensors and adds the routers.
    model.release();
    loaded.model.release();
  }
}

async function benchPrefill(
  model: GPT,
  spec: RowSpec,
  tokens: Uint8Array,
  B: number,
  P: number,
  reps: number,
): Promise<PrefillResult> {
  const g = gpu();
  const x = keep(tensor(prompts(tokens, B, P).flat(), [B, P], { dtype: "u32" }));
  const opts = { ...spec.opts, ffn: tagFfn };
  const forward = () => noGrad(() => tidy(() => void model.forward(x, undefined, opts)));
  try {
    forward(); // warm-up: pipelines, pool
    await g.recorder.sync();
    const ms: number[] = [];
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      for (let i = 0; i < PREFILL_FORWARDS; i++) forward();
      await g.recorder.sync();
      ms.push((performance.now() - t0) / PREFILL_FORWARDS);
    }
    let share: number | null = null;
    if (g.recorder.setProfiling(true)) {
      forward();
      const t = ffnTimes(await g.recorder.takeProfile());
      g.recorder.setProfiling(false);
      share = t && t.ffn / t.total;
    }
    const m = median(ms);
    return { batch: B, tokens_per_s: (B * P) / (m / 1000), ms: m, ffn_share: share };
  } finally {
    x.release();
  }
}

async function benchDecode(
  model: GPT,
  spec: RowSpec,
  tokens: Uint8Array,
  B: number,
  P: number,
  gen: number,
  reps: number,
): Promise<DecodeResult> {
  const g = gpu();
  const decoder = new Decoder(model, B, spec.opts);
  const sampling = {
    ...DEFAULT_SAMPLING,
    topK: Math.min(DEFAULT_SAMPLING.topK, model.config.vocab),
  };
  const rows = prompts(tokens, B, P);
  // One untimed token from the prefill, then `gen` timed cached steps.
  const run = async (profile: boolean): Promise<number> => {
    const r = decoder.start(rows, gen + 1, sampling);
    try {
      r.advance(1);
      await g.recorder.sync();
      if (profile) g.recorder.setProfiling(true);
      const t0 = performance.now();
      r.advance(gen);
      await r.read(gen, gen + 1);
      return performance.now() - t0;
    } finally {
      r.release();
    }
  };
  try {
    await run(false); // warm-up
    const ms: number[] = [];
    for (let i = 0; i < reps; i++) ms.push(await run(false));
    let ffnMs: number | null = null;
    let share: number | null = null;
    if (g.dev.hasTimestamps) {
      await run(true);
      const t = ffnTimes(await g.recorder.takeProfile());
      g.recorder.setProfiling(false);
      if (t) {
        ffnMs = t.ffn / gen;
        share = t.ffn / t.total;
      }
    }
    const m = median(ms) / gen;
    return {
      batch: B,
      tokens_per_s: (B * 1000) / m,
      ms_per_token: m,
      ffn_ms_per_token: ffnMs,
      ffn_share: share,
    };
  } finally {
    decoder.release();
  }
}
