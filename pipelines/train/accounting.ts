/**
 * FFN FLOP and time accounting of a training run (metrics.jsonl's `ffn_flops` and
 * `ffn_flops_dense`, and the per-phase totals of the run summary). Pure
 * arithmetic on plain state, so the totals survive a resume and the report
 * can summarize a checkpoint's saved state with the same code.
 */
import { ConfigError } from "../../core/errors.ts";
import { flagOf } from "../config.ts";
import type { Phase } from "./schedule.ts";

/** Shape of a training step, for `ffnFlops`. */
export interface FfnShape {
  /** Tokens per step (B·T). */
  tokens: number;
  /** Residual width C. */
  d_model: number;
  /** FFN width. */
  d_ff: number;
  /** Transformer blocks. */
  n_layer: number;
  /** Experts per layer. */
  experts: number;
  /** Experts per token in a sparse step. */
  top_k: number;
}

/**
 * FFN FLOPs of one training step (forward + backward, backward counted as
 * twice the forward; 2 FLOPs per multiply-add). Dense: two matmuls of
 * tokens × d_model × d_ff per layer, 3 × 2 × 2 × tokens · d · d_ff · n_layer.
 * Sparse: each token runs k of E experts, so the same × k/E, plus the
 * router's scores (tokens × d × E per layer, forward and backward):
 * 3 × 2 × tokens · d · E · n_layer. The top-k choice and the softmax are
 * O(tokens · E) and not counted. This is the `ffn_flops` of metrics.jsonl.
 */
export function ffnFlops(shape: FfnShape & { phase: Phase }): number {
  const { tokens, d_model: d, d_ff, n_layer: L, experts: E, top_k: k } = shape;
  const dense = 3 * 2 * 2 * tokens * d * d_ff * L;
  if (shape.phase === "dense") return dense;
  return (dense * k) / E + 3 * 2 * tokens * d * E * L;
}

/** Per-phase totals. */
export interface PhaseTotals {
  /** Steps run in the phase. */
  steps: number;
  /** Their share of all steps. */
  share: number;
  /** FFN FLOPs spent in the phase. */
  ffn_flops: number;
  /** Wall time of the phase's steps, seconds. */
  wall_s: number;
}

/** What `RunAccounting.summary` returns (part of the run's summary). */
export interface AccountingSummary {
  /** Steps accounted. */
  steps: number;
  /** FFN FLOPs spent. */
  ffn_flops: number;
  /** FFN FLOPs the same steps would have spent dense. */
  ffn_flops_dense: number;
  /** ffn_flops / ffn_flops_dense (1 for a dense run; 0 steps: 1). */
  flops_ratio: number;
  /** Wall time of the steps, seconds. */
  step_s: number;
  /** Wall time outside steps (monitor k-means, MoE-fication, ...), seconds, by name. */
  overhead_s: Record<string, number>;
  /** Steps plus overheads, seconds. */
  wall_s: number;
  /** Totals of the dense steps. */
  dense: PhaseTotals;
  /** Totals of the sparse steps. */
  sparse: PhaseTotals;
}

/** Serializable totals of a `RunAccounting` (for resume). */
export interface AccountingState {
  steps: { dense: number; sparse: number };
  ffn_flops: { dense: number; sparse: number };
  ffn_flops_dense: number;
  ms: { dense: number; sparse: number };
  overhead_ms: Record<string, number>;
}

/** The totals of a run before its first step. */
export function emptyAccounting(): AccountingState {
  return {
    steps: { dense: 0, sparse: 0 },
    ffn_flops: { dense: 0, sparse: 0 },
    ffn_flops_dense: 0,
    ms: { dense: 0, sparse: 0 },
    overhead_ms: {},
  };
}

/** Accumulates FLOPs, steps and wall time per phase over a run (and across resumes). */
export class RunAccounting {
  #s: AccountingState = emptyAccounting();

  /** An accumulator for steps of `shape`, optionally continuing `state`. */
  constructor(readonly shape: FfnShape, state?: AccountingState) {
    for (const [k, v] of Object.entries(shape)) {
      if (!Number.isSafeInteger(v) || v < 1) {
        throw new ConfigError(`${flagOf(k)} must be an integer >= 1, got ${v}`);
      }
    }
    if (shape.top_k > shape.experts) {
      throw new ConfigError(`--top-k ${shape.top_k} is more than --experts ${shape.experts}`);
    }
    if (state) this.#s = structuredClone(state);
  }

  /** Records one step; returns its `ffn_flops` and `ffn_flops_dense` for the metrics line. */
  addStep(phase: Phase, ms: number): { ffn_flops: number; ffn_flops_dense: number } {
    const f = ffnFlops({ ...this.shape, phase });
    const fd = ffnFlops({ ...this.shape, phase: "dense" });
    this.#s.steps[phase]++;
    this.#s.ffn_flops[phase] += f;
    this.#s.ffn_flops_dense += fd;
    this.#s.ms[phase] += ms;
    return { ffn_flops: f, ffn_flops_dense: fd };
  }

  /** Records time spent outside the steps (e.g. "monitor", "moefy"). */
  addOverhead(name: string, ms: number): void {
    this.#s.overhead_ms[name] = (this.#s.overhead_ms[name] ?? 0) + ms;
  }

  /** A JSON-safe copy of the totals. */
  state(): AccountingState {
    return structuredClone(this.#s);
  }

  /** The run's totals. */
  summary(): AccountingSummary {
    return summarizeAccounting(this.#s);
  }
}

/**
 * The totals of saved accounting state: what `RunAccounting.summary` returns,
 * for readers of a checkpoint's `ssd.train` (the report) as well.
 */
export function summarizeAccounting(s: AccountingState): AccountingSummary {
  const steps = s.steps.dense + s.steps.sparse;
  const flops = s.ffn_flops.dense + s.ffn_flops.sparse;
  const stepMs = s.ms.dense + s.ms.sparse;
  const overhead: Record<string, number> = {};
  let overheadMs = 0;
  for (const [k, v] of Object.entries(s.overhead_ms ?? {})) {
    overhead[k] = v / 1000;
    overheadMs += v;
  }
  const phase = (p: Phase): PhaseTotals => ({
    steps: s.steps[p],
    share: steps > 0 ? s.steps[p] / steps : 0,
    ffn_flops: s.ffn_flops[p],
    wall_s: s.ms[p] / 1000,
  });
  return {
    steps,
    ffn_flops: flops,
    ffn_flops_dense: s.ffn_flops_dense,
    flops_ratio: s.ffn_flops_dense > 0 ? flops / s.ffn_flops_dense : 1,
    step_s: stepMs / 1000,
    overhead_s: overhead,
    wall_s: (stepMs + overheadMs) / 1000,
    dense: phase("dense"),
    sparse: phase("sparse"),
  };
}
