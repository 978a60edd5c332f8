/** The probe forward pass of `ssd profile`: FFN activations from the GPU to the host statistics. */
import { evalWindows, windowGroups } from "../../core/data.ts";
import type { GPT } from "../../core/nn/gpt.ts";
import { keep, tidy } from "../../core/scope.ts";
import { noGrad } from "../../core/tape.ts";
import { readAll, type Tensor, tensor } from "../../core/tensor.ts";
import { gpu } from "../../gpu/runtime.ts";
import type { LayerStats } from "./activation_stats.ts";

/**
 * Runs the probe windows through `model` and feeds every layer's FFN
 * activations to `stats`, one host wait per chunk of windows.
 */
export async function probeModel(
  model: GPT,
  tokens: Uint8Array,
  batch: number,
  chunkBytes: number,
  stats: LayerStats[],
  onChunk: (done: number) => void,
): Promise<void> {
  const { ctx, n_layer, d_ff } = model.config;
  // Windows over the probe as inputs: n + 1 "tokens" make n scored positions, one per probe token.
  const windows = evalWindows({ length: tokens.length + 1 }, ctx);
  const perChunk = Math.max(1, Math.floor(chunkBytes / (ctx * d_ff * n_layer * 4)));
  for (let c0 = 0; c0 < windows.length; c0 += perChunk) {
    const chunk = windows.slice(c0, c0 + perChunk);
    const groups = windowGroups(chunk, ctx, batch);
    const acts: Tensor[] = []; // group-major, then layer: (B, T, d_ff) each
    noGrad(() => {
      for (const group of groups) {
        const T = group[0].scored;
        const x = new Uint32Array(group.length * T);
        group.forEach((w, b) => x.set(tokens.subarray(w.start, w.start + T), b * T));
        tidy(() => {
          model.forward(tensor(x, [group.length, T], { dtype: "u32" }), undefined, {
            probe: (a) => acts.push(keep(a)),
          });
        });
        // Submit in pieces so one command buffer does not grow without bound.
        if (acts.length % (8 * n_layer) === 0) gpu().recorder.flush();
      }
    });
    let host: Float32Array[];
    try {
      host = (await readAll(acts)) as Float32Array[];
    } finally {
      for (const t of acts) t.release();
    }
    let row = chunk[0].start;
    groups.forEach((group, gi) => {
      const rows = group.length * group[0].scored;
      for (let l = 0; l < n_layer; l++) stats[l].add(host[gi * n_layer + l], row, rows);
      row += rows;
    });
    onChunk(row);
  }
}
