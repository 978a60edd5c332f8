/**
 * `ssd moefy`: turns a dense checkpoint into the MoE checkpoint of SPEC 4/5.
 *
 * Per FFN layer: cluster the d_ff neurons into E equal experts (balanced
 * k-means on the L2-normalised rows of c_fc.weight, or on co-activation
 * features of the probe tokens with `--method coact`), permute the neurons
 * so that expert e owns stored rows [e·s, (e+1)·s) of c_fc (and the same
 * columns of c_proj), with the AdamW moments permuted alongside, and build
 * the router:
 *
 * - `centroid` (SPEC 6): row e = the mean of expert e's normalised c_fc
 *   rows, rescaled to unit length times the layer's mean row norm;
 * - `mlp`: a router learned on the probe activations, as MoEfication's MLP
 *   router, but kept to one linear layer so that it fits SPEC 4's
 *   `router.weight [E, d]`: trained (softmax cross-entropy, Adam) to predict
 *   each expert's share of the token's activation mass from the FFN input,
 *   on the first half of the probe tokens; its coverage is reported on the
 *   held-out second half.
 *
 * It then reports, per layer and k in {E/8, E/4, E/2, top_k}, the coverage
 * of the router's choice and of the oracle's, and the validation loss of the
 * written checkpoint with MoE inference at each k next to the dense loss.
 */
import { defaultTopK } from "../core/nn/moe_layout.ts";
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
  permuteRows,
} from "../core/moe/partition.ts";
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
  if (!Number.isInteger(E) || E < 1 || model.d_ff % E !== 0) {
    throw new ConfigError(
      `--experts ${E} does not divide d_ff ${model.d_ff}: choose a divisor of ${model.d_ff}`,
    );
  }
  const k = c.top_k ?? defaultTopK(E);
  if (!Number.isInteger(k) || k < 1 || k > E) {
    throw new ConfigError(`--top-k must be in 1..${E} (the experts per layer), got ${k}`);
  }
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

/** Centroid router (SPEC 6) for a layer's permuted, normalised c_fc rows. */
export function centroidRouter(fcW: Float32Array, dff: number, C: number, E: number): Float32Array {
  const s = dff / E;
  const router = new Float32Array(E * C);
  let meanNorm = 0;
  for (let i = 0; i < dff; i++) {
    let n = 0;
    for (let c = 0; c < C; c++) n += fcW[i * C + c] ** 2;
    n = Math.sqrt(n);
    meanNorm += n / dff;
    for (let c = 0; c < C; c++) router[Math.floor(i / s) * C + c] += fcW[i * C + c] / (n || 1) / s;
  }
  for (let e = 0; e < E; e++) {
    let n = 0;
    for (let c = 0; c < C; c++) n += router[e * C + c] ** 2;
    n = Math.sqrt(n) || 1;
    for (let c = 0; c < C; c++) router[e * C + c] *= meanNorm / n;
  }
  return router;
}

/** MoE-fies `config.checkpoint` into `config.out`; see the module comment. */
export async function runMoefy(config: MoefyConfig): Promise<MoefyReport> {
  const ck = await readCheckpoint(config.checkpoint);
  if (ck.metadata[META_MOE] !== undefined) {
    throw new CheckpointError(
      `Checkpoint ${config.checkpoint} is already an MoE checkpoint: moefy its dense source ` +
        `instead (re-clustering an MoE checkpoint is not supported)`,
    );
  }
  const model = validateConfig(metaJson(ck.header, META_CONFIG, true) as unknown as GPTConfig);
  const topK = checkConfig(config, model);
  const E = config.experts;
  const C = model.d_model;
  const dff = model.d_ff;
  const data = loadDataset({ data: config.data ?? undefined });
  const probeTokens = data.val.subarray(0, Math.min(data.val.length, config.tokens + 1));
  const evalTokens = data.val.subarray(0, Math.min(data.val.length, config.eval_tokens + 1));

  const g = await initGpu();
  await autotuneMatmul(g);
  // Activations and FFN inputs of the dense model on the probe tokens, per layer.
  const dense = await loadGPT(config.checkpoint);
  let capture: FfnCapture[];
  let denseLoss: EvalResult;
  try {
    capture = await captureFfn(dense.model, probeTokens);
    denseLoss = await evaluateTokens(dense.model, evalTokens, 64);
  } finally {
    dense.model.release();
  }

  const tensors = new Map<string, HostTensor>(ck.tensors);
  const layers: MoefyLayer[] = [];
  const perms: number[][] = [];
  const ks = reportedKs(E, topK);
  let kmeansMs = 0;
  for (let l = 0; l < model.n_layer; l++) {
    const h = `transformer.h.${l}.mlp.`;
    const fcW = f32Data(ck.tensors.get(h + "c_fc.weight")!, h + "c_fc.weight");
    const cap = capture[l];
    const points = config.method === "param" ? fcW : coactFeatures(cap.act, cap.n, dff);
    const dim = points.length / dff;
    const t0 = performance.now();
    const km = await balancedKMeans(points, dff, dim, E, {
      iters: config.iters,
      seed: config.seed + l,
      normalize: true,
    });
    const ms = performance.now() - t0;
    kmeansMs += ms;
    const perm = Array.from(permutationFromLabels(km.labels, E));
    perms.push(perm);

    // Permute the FFN's neurons, and their AdamW moments, into expert order.
    const permute = (name: string, fn: (x: Float32Array) => Float32Array) => {
      for (const key of [name, optimMName(name), optimVName(name)]) {
        const t = tensors.get(key);
        if (t) tensors.set(key, { ...t, data: fn(f32Data(t, key)) });
      }
    };
    permute(h + "c_fc.weight", (x) => permuteRows(x, dff, C, perm));
    permute(h + "c_fc.bias", (x) => permuteRows(x, dff, 1, perm));
    permute(h + "c_proj.weight", (x) => permuteCols(x, C, dff, perm));
    const permAct = permuteCols(cap.act, cap.n, dff, perm);
    const half = Math.floor(cap.n / 2);
    let router: Float32Array;
    let evalFrom = 0;
    if (config.router === "centroid") {
      router = centroidRouter(f32Data(tensors.get(h + "c_fc.weight")!, "c_fc"), dff, C, E);
    } else {
      router = trainLinearRouter(cap.input, permAct, half, C, dff, E, config.seed + l);
      evalFrom = half;
    }
    tensors.set(routerName(l), { dtype: "F32", shape: [E, C], data: router });
    // Coverage on the tokens the router was not fitted on (all of them for centroids).
    const nEval = cap.n - evalFrom;
    const stored = Uint32Array.from({ length: dff }, (_, j) => Math.floor(j / (dff / E)));
    const mass = expertMass(permAct.subarray(evalFrom * dff), nEval, stored, E);
    const inputs = cap.input.subarray(evalFrom * C);
    const coverage = ks.map((k) => ({
      k,
      router: coverageFromMass(mass, nEval, E, routerTopK(inputs, router, nEval, C, E, k), k),
      oracle: coverageFromMass(mass, nEval, E, oracleTopK(mass, nEval, E, k), k),
    }));
    layers.push({ layer: l, inertia: km.inertia, kmeans_ms: ms, coverage });
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
  metadata["ssd.moe"] = full["ssd.moe"];
  await writeCheckpoint(config.out, { tensors, metadata });

  const moeModel = await loadGPT(config.out);
  const moe: (EvalResult & { k: number })[] = [];
  try {
    for (const k of ks) {
      moe.push({ k, ...(await evaluateTokens(moeModel.model, evalTokens, 64, k)) });
    }
  } finally {
    moeModel.model.release();
  }
  return {
    out: config.out,
    experts: E,
    top_k: topK,
    method: config.method,
    router: config.router,
    layers,
    dense: denseLoss,
    moe,
    kmeans_ms: kmeansMs,
  };
}
