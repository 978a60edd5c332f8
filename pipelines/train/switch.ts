/**
 * What SSD training does to the model at a phase switch (SPEC 6): reading
 * each FFN's c_fc rows in original neuron order for the partition monitor,
 * and, on a switch to sparse, permuting the neurons (with their AdamW
 * moments) into the monitor's expert partition and rebuilding the centroid
 * routers. A switch back to dense changes nothing: the MoE is already a
 * dense FFN with permuted neurons.
 *
 * Both run on the host between steps (one read-back and a few uploads per
 * switch or check, every `monitor_every` steps), which costs a few ms
 * against the hundreds of steps between them.
 */
import { SsdError } from "../../core/errors.ts";
import type { GPT } from "../../core/nn/gpt.ts";
import {
  invertPermutation,
  permutationFromLabels,
  permuteCols,
  permuteRows,
} from "../../core/moe/partition.ts";
import type { AdamW } from "../../core/optim/adamw.ts";
import { readAll, type Tensor } from "../../core/tensor.ts";
import { gpu } from "../../gpu/runtime.ts";
import { centroidRouter } from "../moefy.ts";

function layerName(l: number, what: string): string {
  return `transformer.h.${l}.mlp.${what}`;
}

/** Every layer's c_fc.weight (d_ff, C) with rows in original neuron order. */
export async function originalFcRows(model: GPT): Promise<Float32Array[]> {
  const { n_layer: L, d_ff: F, d_model: C } = model.config;
  const stored = await readAll(
    Array.from({ length: L }, (_, l) => model.p(layerName(l, "c_fc.weight"))),
  );
  return stored.map((rows, l) => {
    const perm = model.moe?.perms[l];
    if (!perm) return rows as Float32Array;
    // Original neuron i is stored at row perm[i].
    return permuteRows(rows as Float32Array, F, C, invertPermutation(perm));
  });
}

/**
 * Re-permutes every layer's neurons so that expert e owns stored rows
 * [e·s, (e+1)·s) of the partition `labels` (per layer, original neuron
 * order), moves the AdamW moments with them, rebuilds the centroid routers
 * and resets the routers' moments. Updates `model.moe.perms`.
 */
export async function applyPartition(model: GPT, opt: AdamW, labels: Uint32Array[]): Promise<void> {
  const moe = model.moe;
  if (!moe) throw new SsdError("applyPartition(): the model has no MoE layout");
  const { n_layer: L, d_ff: F, d_model: C } = model.config;
  const E = moe.experts;
  const rec = gpu().recorder;
  // Per layer: [tensor, kind] of everything indexed by neuron.
  const targets: { t: Tensor; l: number; axis: "rows" | "cols"; cols: number }[] = [];
  for (let l = 0; l < L; l++) {
    const add = (name: string, axis: "rows" | "cols", cols: number) => {
      const p = model.params.get(layerName(l, name));
      if (!p) return;
      const { m, v } = opt.moments(p);
      for (const t of [p, m, v]) targets.push({ t, l, axis, cols });
    };
    add("c_fc.weight", "rows", C);
    add("c_fc.bias", "rows", 1);
    add("c_proj.weight", "cols", F);
  }
  const host = await readAll(targets.map((x) => x.t));
  const perms: number[][] = [];
  const rel: Uint32Array[] = [];
  for (let l = 0; l < L; l++) {
    const next = permutationFromLabels(labels[l], E); // original → new stored
    const old = invertPermutation(moe.perms[l]); // stored → original
    rel.push(Uint32Array.from({ length: F }, (_, p) => next[old[p]]));
    perms.push(Array.from(next));
  }
  targets.forEach((x, i) => {
    const data = host[i] as Float32Array;
    const out = x.axis === "rows"
      ? permuteRows(data, F, x.cols, rel[x.l])
      : permuteCols(data, C, F, rel[x.l]);
    rec.upload(x.t.buffer, out);
  });
  // Centroid routers from the re-permuted c_fc rows; their moments start over.
  for (let l = 0; l < L; l++) {
    const i = targets.findIndex((x) => x.l === l && x.t === model.p(layerName(l, "c_fc.weight")));
    const fc = permuteRows(host[i] as Float32Array, F, C, rel[l]);
    const router = model.p(layerName(l, "router.weight"));
    rec.upload(router.buffer, centroidRouter(fc, F, C, E));
    const { m, v } = opt.moments(router);
    const zeros = new Float32Array(E * C);
    rec.upload(m.buffer, zeros);
    rec.upload(v.buffer, zeros);
  }
  model.moe = { ...moe, perms };
}

/** The identity MoE layout a model starts SSD training with (no expert formed yet). */
export function identityLayout(
  config: { n_layer: number; d_ff: number },
  experts: number,
  topK: number,
): { experts: number; top_k: number; router: "centroid"; method: "param"; perms: number[][] } {
  const perm = Array.from({ length: config.d_ff }, (_, i) => i);
  return {
    experts,
    top_k: topK,
    router: "centroid",
    method: "param",
    perms: Array.from({ length: config.n_layer }, () => [...perm]),
  };
}
