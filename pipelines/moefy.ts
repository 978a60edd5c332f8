/**
 * `ssd moefy`: turns a dense checkpoint into an MoE checkpoint (the same
 * tensors with neurons in expert order, a `router.weight [E, d]` per layer,
 * and the layout in `ssd.moe`).
 *
 * Per FFN layer: cluster the d_ff neurons into E equal experts (balanced
 * k-means on the L2-normalised rows of c_fc.weight, or on co-activation
 * features of the probe tokens with `--method coact`), permute the neurons
 * so that expert e owns stored rows [e·s, (e+1)·s) of c_fc (and the same
 * columns of c_proj), with the AdamW moments permuted alongside
 * (`core/moe/moefy.ts`), and build the router:
 *
 * - `centroid`: row e = the mean of expert e's normalised c_fc
 *   rows, rescaled to unit length times the layer's mean row norm;
 * - `mlp`: a router learned on the probe activations, as MoEfication's MLP
 *   router, but kept to one linear layer so that it fits the checkpoint's
 *   `router.weight [E, d]`: trained (softmax cross-entropy, Adam) to predict
 *   each expert's share of the token's activation mass from the FFN input,
 *   on the first half of the probe tokens; its coverage is reported on the
 *   held-out second half.
 *
 * It then reports, per layer and k in {E/8, E/4, E/2, top_k}, the coverage
 * of the router's choice and of the oracle's, and the validation loss of the
 * written checkpoint with MoE inference at each k next to the dense loss.
 */
import { checkExperts, defaultTopK } from "../core/nn/moe_layout.ts";
import {
  f32Data,
  type HostTensor,
  META_CONFIG,
  META_MOE,
  metaJson,
  optimMName,
  optimVName,
  readCheckpoint,
  ssdMetadata,
  writeCheckpoint,
} from "../core/checkpoint.ts";
import { loadDataset } from "../core/data.ts";
import { CheckpointError, ConfigError } from "../core/errors.ts";
import { type GPTConfig, validateConfig } from "../core/nn/config.ts";
import { loadGPT } from "../core/nn/gpt_checkpoint.ts";
import { type MoeLayout, routerName } from "../core/nn/moe_layout.ts";
import { balancedKMeans, coactFeatures } from "../core/moe/balanced_kmeans.ts";
import {
  coverageFromMass,
  expertMass,
  oracleTopK,
  permutationFromLabels,
  permuteCols,
} from "../core/moe/partition.ts";
import { centroidRouter, ffnTensorName, permuteLayerNeurons } from "../core/moe/moefy.ts";
import { autotuneMatmul } from "../gpu/autotune.ts";
import { initGpu } from "../gpu/runtime.ts";
import { type EvalResult, evaluateTokens } from "../core/nn/token_nll.ts";
import { captureFfn, type FfnCapture } from "../core/nn/ffn_capture.ts";
import { routerTopK, trainLinearRouter } from "../core/moe/router_fit.ts";

/** What `ssd moefy` builds. */
export interface MoefyConfig {
  /** Dense source checkpoint. */
  checkpoint: string;
  /** Output MoE checkpoint. */
  out: string;
  /** Experts per layer (divides d_ff). */
  experts: number;
  /** Default experts per token; null: E/4. */
  top_k: number | null;
  /** Neuron clustering: c_fc rows or co-activation. */
  method: "param" | "coact";
  /** Router kind. */
  router: "centroid" | "mlp";
  /** Text for probes and the loss (its validation part); null: Brown. */
  data: string | null;
  /** Probe tokens (held-out) for coverage, coact features and the mlp router. */
  tokens: number;
  /** Validation tokens for the loss at each k. */
  eval_tokens: number;
  /** k-means iterations. */
  iters: number;
  /** Seed of k-means++ and the router fit. */
  seed: number;
}

/** Defaults of every field but the checkpoint and output. */
export const DEFAULT_MOEFY_CONFIG: Readonly<Omit<MoefyConfig, "checkpoint" | "out" | "experts">> =
  Object.freeze({
    top_k: null,
    method: "param",
    router: "centroid",
    data: null,
    tokens: 16384,
    eval_tokens: 65536,
    iters: 50,
    seed: 0,
  });

/** Coverage of one selection size on one layer. */
export interface CoverageRow {
  /** Experts per token. */
  k: number;
  /** Mean share of activation mass inside the router's k experts. */
  router: number;
  /** Same for the oracle's k experts (the best possible). */
  oracle: number;
}

/** Per-layer outcome. */
export interface MoefyLayer {
  /** Layer index. */
  layer: number;
  /** k-means inertia (sum of squared distances to centroids). */
  inertia: number;
  /** k-means wall time, ms. */
  kmeans_ms: number;
  /** Coverage per k (held-out tokens for the mlp router). */
  coverage: CoverageRow[];
}

/** Progress hooks of `runMoefy`. */
export interface MoefyHooks {
  /** After each FFN layer is clustered and given its router: layers done, of `total`. */
  onLayer?(done: number, total: number): void;
}

/** What `runMoefy` returns. */
export interface MoefyReport {
  /** Written checkpoint. */
  out: string;
  /** Experts per layer. */
  experts: number;
  /** Default experts per token of the written checkpoint. */
  top_k: number;
  /** Clustering method ("param" or "coact"). */
  method: string;
  /** Router kind ("centroid" or "mlp"). */
  router: string;
  /** Per-layer clustering and coverage. */
  layers: MoefyLayer[];
  /** Validation loss of the dense model. */
  dense: EvalResult;
  /** Validation loss with MoE inference at each k. */
  moe: (EvalResult & { k: number })[];
  /** Total k-means time, ms. */
  kmeans_ms: number;
}

/** The k values reported: E/8, E/4, E/2 (those ≥ 1) and top_k, ascending, unique. */
export function reportedKs(E: number, topK: number): number[] {
  const ks = [E / 8, E / 4, E / 2, topK].filter((k) => Number.isInteger(k) && k >= 1);
  return [...new Set(ks)].sort((a, b) => a - b);
}

function checkConfig(c: MoefyConfig, model: GPTConfig): number {
  const E = c.experts;
  const k = c.top_k ?? defaultTopK(E);
  checkExperts(E, k, model.d_ff);
  for (
    const [name, v] of [["--tokens", c.tokens], ["--eval-tokens", c.eval_tokens], [
      "--iters",
      c.iters,
    ]] as const
  ) {
    if (!Number.isInteger(v) || v < 1) {
      throw new ConfigError(`${name} must be a positive integer, got ${v}`);
    }
  }
  return k;
}

/** Whether `a` and `b` name one existing file (symlinks, `..` and hard links included). */
function sameFile(a: string, b: string): boolean {
  try {
    const sa = Deno.statSync(a);
    const sb = Deno.statSync(b);
    return sa.dev === sb.dev && sa.ino !== null && sa.ino === sb.ino;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** The dense source's tensors and model config; refuses MoE sources and an output over the source. */
async function readDenseSource(
  config: MoefyConfig,
): Promise<{ ck: Awaited<ReturnType<typeof readCheckpoint>>; model: GPTConfig }> {
  if (sameFile(config.checkpoint, config.out)) {
    throw new ConfigError(
      `-o ${config.out} is the source checkpoint ${config.checkpoint}: ` +
        `write the MoE checkpoint to another file`,
    );
  }
  const ck = await readCheckpoint(config.checkpoint);
  if (ck.metadata[META_MOE] !== undefined) {
    throw new CheckpointError(
      `Checkpoint ${config.checkpoint} is already an MoE checkpoint: moefy its dense source ` +
        `instead (re-clustering an MoE checkpoint is not supported)`,
    );
  }
  const model = validateConfig(metaJson(ck.header, META_CONFIG, true) as unknown as GPTConfig);
  return { ck, model };
}

/** The dense model's FFN activations on the probe tokens, and its loss on the eval tokens. */
async function probeDense(
  path: string,
  probeTokens: Uint8Array,
  evalTokens: Uint8Array,
): Promise<{ capture: FfnCapture[]; dense: EvalResult }> {
  const loaded = await loadGPT(path);
  try {
    const capture = await captureFfn(loaded.model, probeTokens);
    const dense = await evaluateTokens(loaded.model, evalTokens, 64);
    return { capture, dense };
  } finally {
    loaded.model.release();
  }
}

/**
 * Clusters layer `l`'s neurons, permutes its tensors (and moments) in
 * `tensors` into expert order, sets its router, and measures its coverage.
 */
async function moefyLayer(
  config: MoefyConfig,
  tensors: Map<string, HostTensor>,
  l: number,
  cap: FfnCapture,
  model: GPTConfig,
  ks: number[],
): Promise<{ layer: MoefyLayer; perm: number[] }> {
  const E = config.experts;
  const { d_model: C, d_ff: dff } = model;
  const fcName = ffnTensorName(l, "c_fc.weight");
  const fcW = f32Data(tensors.get(fcName)!, fcName);
  const points = config.method === "param" ? fcW : coactFeatures(cap.act, cap.n, dff);
  const t0 = performance.now();
  const km = await balancedKMeans(points, dff, points.length / dff, E, {
    iters: config.iters,
    seed: config.seed + l,
    normalize: true,
  });
  const ms = performance.now() - t0;
  const perm = permutationFromLabels(km.labels, E);
  const store = {
    get: (key: string) => {
      const t = tensors.get(key);
      return t && f32Data(t, key);
    },
    set: (key: string, data: Float32Array) => tensors.set(key, { ...tensors.get(key)!, data }),
  };
  const fcP = permuteLayerNeurons(store, l, perm, dff, C, (n) => [optimMName(n), optimVName(n)]);
  const permAct = permuteCols(cap.act, cap.n, dff, perm);
  const half = Math.floor(cap.n / 2);
  // The mlp router is fitted on the first half of the probe and measured on the other.
  const [router, evalFrom] = config.router === "centroid"
    ? [centroidRouter(fcP, dff, C, E), 0]
    : [trainLinearRouter(cap.input, permAct, half, C, dff, E, config.seed + l), half];
  tensors.set(routerName(l), { dtype: "F32", shape: [E, C], data: router });
  const nEval = cap.n - evalFrom;
  const stored = Uint32Array.from({ length: dff }, (_, j) => Math.floor(j / (dff / E)));
  const mass = expertMass(permAct.subarray(evalFrom * dff), nEval, stored, E);
  const inputs = cap.input.subarray(evalFrom * C);
  const coverage = ks.map((k) => ({
    k,
    router: coverageFromMass(mass, nEval, E, routerTopK(inputs, router, nEval, C, E, k), k),
    oracle: coverageFromMass(mass, nEval, E, oracleTopK(mass, nEval, E, k), k),
  }));
  return {
    layer: { layer: l, inertia: km.inertia, kmeans_ms: ms, coverage },
    perm: Array.from(perm),
  };
}

/** The loss of the written MoE checkpoint at each k. */
async function evalMoe(
  path: string,
  evalTokens: Uint8Array,
  ks: number[],
): Promise<(EvalResult & { k: number })[]> {
  const loaded = await loadGPT(path);
  const moe: (EvalResult & { k: number })[] = [];
  try {
    for (const k of ks) moe.push({ k, ...(await evaluateTokens(loaded.model, evalTokens, 64, k)) });
  } finally {
    loaded.model.release();
  }
  return moe;
}

/** MoE-fies `config.checkpoint` into `config.out`; see the module comment. */
export async function runMoefy(
  config: MoefyConfig,
  hooks: MoefyHooks = {},
): Promise<MoefyReport> {
  const { ck, model } = await readDenseSource(config);
  const topK = checkConfig(config, model);
  const E = config.experts;
  const data = loadDataset({ data: config.data ?? undefined });
  const probeTokens = data.val.subarray(0, Math.min(data.val.length, config.tokens + 1));
  const evalTokens = data.val.subarray(0, Math.min(data.val.length, config.eval_tokens + 1));

  await autotuneMatmul(await initGpu());
  const { capture, dense } = await probeDense(config.checkpoint, probeTokens, evalTokens);
  const tensors = new Map<string, HostTensor>(ck.tensors);
  const ks = reportedKs(E, topK);
  const layers: MoefyLayer[] = [];
  const perms: number[][] = [];
  for (let l = 0; l < model.n_layer; l++) {
    const { layer, perm } = await moefyLayer(config, tensors, l, capture[l], model, ks);
    layers.push(layer);
    perms.push(perm);
    hooks.onLayer?.(l + 1, model.n_layer);
  }

  const layout: MoeLayout = {
    experts: E,
    top_k: topK,
    router: config.router,
    method: config.method,
    perms,
  };
  const metadata = { ...ck.metadata };
  const full = ssdMetadata({
    config: { ...model },
    moe: layout as unknown as Record<string, unknown>,
  });
  metadata[META_MOE] = full[META_MOE];
  await writeCheckpoint(config.out, { tensors, metadata });

  return {
    out: config.out,
    experts: E,
    top_k: topK,
    method: config.method,
    router: config.router,
    layers,
    dense,
    moe: await evalMoe(config.out, evalTokens, ks),
    kmeans_ms: layers.reduce((a, x) => a + x.kmeans_ms, 0),
  };
}
