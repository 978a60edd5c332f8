/**
 * One training step: upload a batch, forward, backward, clip, AdamW, and ONE
 * host wait that reads the loss, the gradient norm and the per-layer
 * statistics together. The step runs in a `tidyAsync` scope, so its
 * activations and gradients return to the pool when it ends. Sparse steps
 * run each FFN on its tokens' top-k experts, and AdamW leaves the experts
 * that got no token untouched.
 */
import type { Batch } from "../../core/data.ts";
import type { GPT } from "../../core/nn/gpt.ts";
import { AdamW } from "../../core/optim/adamw.ts";
import { gradClip } from "../../core/optim/clip.ts";
import { tidyAsync } from "../../core/scope.ts";
import { backward } from "../../core/tape.ts";
import { readAll, type Tensor, tensor } from "../../core/tensor.ts";
import type { ExpertMask } from "../../gpu/kernels/adamw.ts";
import type { OptimizerConfig } from "./config.ts";
import type { Phase } from "./schedule.ts";

/** What one step read back. */
export interface StepResult {
  /** Training loss of the batch. */
  loss: number;
  /** Global gradient norm before clipping. */
  norm: number;
  /** Per FFN layer, the fraction of activations > 0 (dense steps). */
  actRatio: number[];
  /** Per layer, tokens routed to each expert (sparse steps). */
  load: number[][];
  /** Wall time of the step, ms. */
  ms: number;
}

/** How to run one step. */
export interface StepOptions {
  /** Dense, or sparse on each token's top-k experts. */
  phase: Phase;
  /** Learning rate. */
  lr: number;
  /** Experts per token in a sparse step. */
  topK: number;
  /** Global gradient-norm clip (0 = off). */
  gradClip: number;
}

/** Runs one step of `model` on `batch`, B sequences of T tokens. */
export async function trainStep(
  model: GPT,
  optimizer: AdamW,
  batch: Batch & { B: number; T: number },
  step: StepOptions,
): Promise<StepResult> {
  const { B, T } = batch;
  const params = [...model.params.values()];
  const t0 = performance.now();
  const r = await tidyAsync(async () => {
    const x = tensor(batch.x, [B, T], { dtype: "u32" });
    const y = tensor(batch.y, [B, T], { dtype: "u32" });
    const counts: Tensor[] = [];
    const out = model.forward(x, y, {
      actRatio: step.phase === "dense",
      topK: step.phase === "sparse" ? step.topK : undefined,
      onExpertCounts: (l, c) => (counts[l] = c),
    });
    backward(out.loss!);
    const clip = gradClip(params, step.gradClip > 0 ? step.gradClip : Infinity);
    optimizer.step(step.lr, clip.factor, expertMasks(model, counts));
    optimizer.zeroGrad();
    // The step's one host wait: loss, gradient norm, activation ratios and expert loads.
    const n = out.actRatio.length;
    const [l, g, ...rest] = await readAll([out.loss!, clip.norm, ...out.actRatio, ...counts]);
    return {
      loss: l[0],
      norm: g[0],
      actRatio: rest.slice(0, n).map((v) => v[0]),
      load: rest.slice(n).map((v) => Array.from(v)),
    };
  });
  return { ...r, ms: performance.now() - t0 };
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

/** AdamW over every parameter of `model`, with the config's betas and weight decay. */
export function makeOptimizer(model: GPT, c: OptimizerConfig): AdamW {
  return new AdamW([...model.params.values()], {
    lr: c.lr,
    betas: [c.beta1, c.beta2],
    eps: 1e-8,
    weightDecay: c.weight_decay,
  });
}
