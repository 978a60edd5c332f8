/**
 * The deterministic eval protocol over a token stream: windows of
 * ctx inputs tiling the text (core/data.ts `evalWindows`), every token but
 * the first scored once. Full windows run in batches; the last, shorter
 * window runs alone at its own length, so no padding or mask is needed.
 */
import { evalWindows, packEvalBatch, windowGroups } from "../data.ts";
import type { ForwardOptions, GPT } from "./gpt.ts";
import { noGrad } from "../tape.ts";
import { readAll, type Tensor, tensor } from "../tensor.ts";
import { keep, tidy } from "../scope.ts";
import { gpu } from "../../gpu/runtime.ts";

/** Mean next-token NLL over a token stream. */
export interface EvalResult {
  /** Mean negative log-likelihood, nats per token. */
  nll: number;
  /** Bits per byte (= nll / ln 2 for byte tokens). */
  bpb: number;
  /** Perplexity exp(nll). */
  ppl: number;
  /** Tokens scored. */
  tokens: number;
}

/**
 * Scores `tokens` with `model` (an MoE model at `topK` experts per token
 * when given; `forceSparse` runs the MoE path at topK = E too). `batch`
 * windows run per forward; every window's loss stays on the GPU until one
 * read at the end (one host wait).
 */
export async function evaluateTokens(
  model: GPT,
  tokens: Uint8Array,
  batch: number,
  topK?: number,
  opts: Pick<ForwardOptions, "forceSparse"> = {},
): Promise<EvalResult> {
  const ctx = model.config.ctx;
  const windows = evalWindows(tokens, ctx);
  const groups = windowGroups(windows, ctx, batch);

  const losses: { loss: Tensor; count: number }[] = [];
  noGrad(() => {
    for (const group of groups) {
      const T = group[0].scored;
      const packed = packEvalBatch(tokens, group, T);
      const loss = tidy(() => {
        const x = tensor(packed.x, [group.length, T], { dtype: "u32" });
        const y = tensor(packed.y, [group.length, T], { dtype: "u32" });
        return model.forward(x, y, { topK, forceSparse: opts.forceSparse }).loss!;
      });
      losses.push({ loss: keep(loss), count: packed.scored });
      // Submit in chunks so one command buffer does not grow without bound.
      if (losses.length % 8 === 0) gpu().recorder.flush();
    }
  });
  const values = await readAll(losses.map((l) => l.loss));
  let sum = 0;
  let count = 0;
  losses.forEach((l, i) => {
    sum += values[i][0] * l.count;
    count += l.count;
    l.loss.release();
  });
  const nll = sum / count;
  return { nll, bpb: nll / Math.LN2, ppl: Math.exp(nll), tokens: count };
}
