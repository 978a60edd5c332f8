/**
 * @module
 * MoE-fication of the FFN layers, in one place: from each layer's neuron →
 * expert labels, a permutation that gives expert e the stored rows
 * [e·s, (e+1)·s) of `c_fc` (weight and bias) and the same columns of
 * `c_proj`, applied to every tensor indexed by neuron (the AdamW moments
 * too, so training continues where it was), and the centroid router built
 * from the permuted `c_fc` rows.
 *
 * Three callers share it: `ssd moefy` (the host tensors of a checkpoint),
 * `ssd bench` (a dense model moefied in memory) and SSD training's switch to
 * sparse (a model that is already an MoE, re-permuted to a new partition).
 * The host functions do the work; the model functions read the GPU tensors
 * back once, call them, and upload the results.
 */
import { SsdError } from "../errors.ts";
import { GPT } from "../nn/gpt.ts";
import { type MoeLayout, routerName } from "../nn/moe_layout.ts";
import type { AdamW } from "../optim/adamw.ts";
import { keep } from "../scope.ts";
import { readAll, type Tensor, tensor } from "../tensor.ts";
import { gpu } from "../../gpu/runtime.ts";
import {
  invertPermutation,
  type Labels,
  permutationFromLabels,
  permuteCols,
  permuteRows,
} from "./partition.ts";

/** The name of FFN tensor `what` (`c_fc.weight`, ...) of layer `l`. */
export function ffnTensorName(l: number, what: string): string {
  return `transformer.h.${l}.mlp.${what}`;
}

/** The FFN tensors indexed by neuron, and which axis the neuron is: (d_ff, C), (d_ff), (C, d_ff). */
export const NEURON_TENSORS: readonly { what: string; axis: "rows" | "cols" }[] = Object.freeze([
  { what: "c_fc.weight", axis: "rows" },
  { what: "c_fc.bias", axis: "rows" },
  { what: "c_proj.weight", axis: "cols" },
]);

/**
 * Where `permuteLayerNeurons` reads and writes a layer's host tensors: by
 * name, with `get` undefined for a tensor the model does not have (no bias).
 */
export interface NeuronStore {
  /** The tensor's values, or undefined when it does not exist. */
  get(name: string): Float32Array | undefined;
  /** Replaces the tensor's values. */
  set(name: string, data: Float32Array): void;
}

/**
 * Moves neuron i of layer `l` to stored position perm[i] in every neuron
 * tensor of `store`, and in the tensors `companions(name)` names alongside
 * each (the AdamW moments). Returns the permuted c_fc.weight (d_ff, C).
 */
export function permuteLayerNeurons(
  store: NeuronStore,
  l: number,
  perm: ArrayLike<number>,
  dff: number,
  C: number,
  companions: (name: string) => string[] = () => [],
): Float32Array {
  for (const { what, axis } of NEURON_TENSORS) {
    const name = ffnTensorName(l, what);
    for (const key of [name, ...companions(name)]) {
      const x = store.get(key);
      if (!x) continue;
      store.set(
        key,
        axis === "rows" ? permuteRows(x, dff, x.length / dff, perm) : permuteCols(x, C, dff, perm),
      );
    }
  }
  return store.get(ffnTensorName(l, "c_fc.weight"))!;
}

/**
 * Centroid router (E, C) of a layer's c_fc rows (d_ff, C) in expert order:
 * row e is the mean of expert e's L2-normalised rows, rescaled to unit
 * length times the layer's mean row norm, so router logits have the scale
 * of the FFN's own pre-activations.
 */
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

/** Stored c_fc rows (d_ff, C) back in original neuron order; `perm[i]` = stored row of neuron i. */
export function rowsInOriginalOrder(
  stored: Float32Array,
  perm: ArrayLike<number> | undefined,
  dff: number,
  C: number,
): Float32Array {
  return perm ? permuteRows(stored, dff, C, invertPermutation(perm)) : stored;
}

/** Every layer's c_fc.weight (d_ff, C) read back from the GPU, in original neuron order. */
export async function modelFcRows(model: GPT): Promise<Float32Array[]> {
  const { n_layer: L, d_ff: F, d_model: C } = model.config;
  const stored = await readAll(
    Array.from({ length: L }, (_, l) => model.p(ffnTensorName(l, "c_fc.weight"))),
  );
  return stored.map((rows, l) =>
    rowsInOriginalOrder(rows as Float32Array, model.moe?.perms[l], F, C)
  );
}

/**
 * Applies `perms[l]` (stored position → new stored position) to every
 * neuron tensor of `model` (and their AdamW moments in `opt`): one read-back,
 * one upload per tensor. Returns each layer's permuted c_fc.weight.
 */
async function permuteModelNeurons(
  model: GPT,
  perms: ArrayLike<number>[],
  opt?: AdamW,
): Promise<Float32Array[]> {
  const { n_layer: L, d_ff: F, d_model: C } = model.config;
  // Moments are keyed by their parameter's name plus a suffix.
  const gpuTensors = new Map<string, Tensor>();
  for (let l = 0; l < L; l++) {
    for (const { what } of NEURON_TENSORS) {
      const name = ffnTensorName(l, what);
      const p = model.params.get(name);
      if (!p) continue;
      gpuTensors.set(name, p);
      if (opt) {
        const { m, v } = opt.moments(p);
        gpuTensors.set(name + "#m", m);
        gpuTensors.set(name + "#v", v);
      }
    }
  }
  const names = [...gpuTensors.keys()];
  const host = await readAll(names.map((n) => gpuTensors.get(n)!));
  const store = new Map(names.map((n, i) => [n, host[i] as Float32Array]));
  const fc = perms.map((perm, l) =>
    permuteLayerNeurons(store, l, perm, F, C, opt ? (n) => [n + "#m", n + "#v"] : undefined)
  );
  const rec = gpu().recorder;
  for (const [name, t] of gpuTensors) rec.upload(t.buffer, store.get(name)!);
  return fc;
}

/**
 * A dense model as an MoE of E experts with centroid routers: neurons
 * permuted in place into the experts of `labels` (per layer), routers new.
 * The returned model shares every other parameter with `model`.
 */
export async function moefyModel(
  model: GPT,
  labels: Labels[],
  E: number,
  topK: number,
): Promise<GPT> {
  const { d_ff: F, d_model: C } = model.config;
  const perms = labels.map((lab) => permutationFromLabels(lab, E));
  const fc = await permuteModelNeurons(model, perms);
  const params = new Map(model.params);
  fc.forEach((rows, l) => {
    const router = tensor(centroidRouter(rows, F, C, E), [E, C], { name: routerName(l) });
    params.set(routerName(l), keep(router));
  });
  const layout: MoeLayout = {
    experts: E,
    top_k: topK,
    router: "centroid",
    method: "param",
    perms: perms.map((p) => Array.from(p)),
  };
  return new GPT(model.config, params, layout);
}

/**
 * Re-permutes an MoE model's neurons (with their AdamW moments) so that
 * expert e owns stored rows [e·s, (e+1)·s) of the partition `labels` (per
 * layer, original neuron order), rebuilds the centroid routers, resets the
 * routers' moments and updates `model.moe.perms`.
 */
export async function repartitionModel(model: GPT, opt: AdamW, labels: Labels[]): Promise<void> {
  const moe = model.moe;
  if (!moe) throw new SsdError("repartitionModel(): the model has no MoE layout");
  const { d_ff: F, d_model: C } = model.config;
  const E = moe.experts;
  const next = labels.map((lab) => permutationFromLabels(lab, E)); // original → new stored
  const rel = next.map((n, l) => {
    const old = invertPermutation(moe.perms[l]); // stored → original
    return Uint32Array.from({ length: F }, (_, p) => n[old[p]]);
  });
  const fc = await permuteModelNeurons(model, rel, opt);
  const rec = gpu().recorder;
  fc.forEach((rows, l) => {
    const router = model.p(routerName(l));
    rec.upload(router.buffer, centroidRouter(rows, F, C, E));
    const { m, v } = opt.moments(router);
    const zeros = new Float32Array(E * C);
    rec.upload(m.buffer, zeros);
    rec.upload(v.buffer, zeros);
  });
  model.moe = { ...moe, perms: next.map((p) => Array.from(p)) };
}
