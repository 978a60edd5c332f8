/**
 * What SSD training does to the model at a phase switch: reading
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
import type { GPT } from "../../core/nn/gpt.ts";
import { modelFcRows, repartitionModel } from "../../core/moe/moefy.ts";
import type { AdamW } from "../../core/optim/adamw.ts";

/** Every layer's c_fc.weight (d_ff, C) with rows in original neuron order. */
export function originalFcRows(model: GPT): Promise<Float32Array[]> {
  return modelFcRows(model);
}

/**
 * Re-permutes every layer's neurons so that expert e owns stored rows
 * [e·s, (e+1)·s) of the partition `labels` (per layer, original neuron
 * order), moves the AdamW moments with them, rebuilds the centroid routers
 * and resets the routers' moments. Updates `model.moe.perms`.
 */
export async function applyPartition(model: GPT, opt: AdamW, labels: Uint32Array[]): Promise<void> {
  await repartitionModel(model, opt, labels);
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
