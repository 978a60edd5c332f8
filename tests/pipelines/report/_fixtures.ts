/**
 * Inputs for the `ssd report` tests, with no GPU and no training: run
 * folders whose `metrics.jsonl` has exactly the lines `ssd train` writes
 * (the keys ssd train writes, switch events, the final line)
 * and, optionally, a checkpoint whose `ssd.train` holds the config and the
 * per-phase accounting; and `ssd bench --json` documents.
 */
import { join } from "node:path";
import { writeTinyCheckpoint } from "../_tiny_checkpoint.ts";

/** Shape of a synthetic run. */
export interface SyntheticRun {
  /** dense, sparse (static from `switchAt`) or ssd (sparse for `sparseSteps` after `switchAt`). */
  schedule: "dense" | "sparse" | "ssd";
  /** Steps logged. */
  steps: number;
  /** FFN layers (length of `act_ratio`). */
  layers?: number;
  /** Last dense step before the first sparse phase. */
  switchAt?: number;
  /** Length of the ssd schedule's sparse phase. */
  sparseSteps?: number;
  /** Steps between stability checks (ssd only). */
  monitorEvery?: number;
  /** Steps between validation losses on step lines; 0: only the final one. */
  evalEvery?: number;
  /** Write `final.safetensors` with `ssd.train` (schedule, threshold, accounting). */
  checkpoint?: boolean;
  /** `stable_threshold` saved in the checkpoint. */
  threshold?: number;
  /** Seed of the loss noise. */
  seed?: number;
}

/** FFN FLOPs of one dense step (the 2000-step default run's value). */
export const DENSE_FLOPS = 1207959552;
/** FFN FLOPs of one sparse step at E = 16, k = 4. */
export const SPARSE_FLOPS = 320864256;

/** Lines of a synthetic `metrics.jsonl`, in the order `ssd train` writes them. */
export function syntheticMetrics(o: SyntheticRun): string[] {
  const layers = o.layers ?? 3;
  const switchAt = o.switchAt ?? Math.floor(o.steps / 4);
  const sparseSteps = o.sparseSteps ?? Math.floor(o.steps / 4);
  const monitor = o.monitorEvery ?? Math.max(1, Math.floor(o.steps / 10));
  let seed = o.seed ?? 1;
  const noise = () => {
    // LCG: deterministic noise without pulling in the project's RNG.
    seed = (seed * 1664525 + 1013904223) >>> 0;
    return seed / 2 ** 32 - 0.5;
  };
  const phaseOf = (step: number): "dense" | "sparse" => {
    if (o.schedule === "dense" || step <= switchAt) return "dense";
    if (o.schedule === "sparse") return "sparse";
    return step <= switchAt + sparseSteps ? "sparse" : "dense";
  };
  const lines: string[] = [];
  let checks = 0;
  for (let step = 1; step <= o.steps; step++) {
    const phase = phaseOf(step);
    if (step > 1 && phaseOf(step - 1) !== phase) {
      lines.push(JSON.stringify({
        event: "switch",
        from: phaseOf(step - 1),
        to: phase,
        step: step - 1,
        similarity: o.schedule === "ssd" && phase === "sparse" ? 0.93 : null,
      }));
    }
    const loss = 1.8 + 3.7 * Math.exp(-step / (o.steps / 8)) + 0.05 * noise();
    const m: Record<string, unknown> = {
      step,
      phase,
      loss,
      lr: 0.002,
      grad_norm: 1 + 0.1 * noise(),
      tokens_per_s: (phase === "sparse" ? 3000 : 2000) + 200 * noise(),
      ms_per_step: phase === "sparse" ? 170 : 256,
      ffn_flops: phase === "sparse" ? SPARSE_FLOPS : DENSE_FLOPS,
      ffn_flops_dense: DENSE_FLOPS,
    };
    if (o.evalEvery && step % o.evalEvery === 0) m.val_loss = loss + 0.1;
    if (phase === "dense") {
      m.act_ratio = Array.from(
        { length: layers },
        (_, l) => 0.5 / (1 + l) * Math.exp(-step / o.steps),
      );
    } else {
      m.expert_load = Array.from({ length: layers }, () => Array(16).fill(32));
    }
    if (o.schedule === "ssd" && phase === "dense" && step % monitor === 1 && step > 1) {
      m.similarity = checks === 0 ? null : Math.min(0.99, 0.3 + 0.15 * checks);
      checks++;
    }
    lines.push(JSON.stringify(m));
  }
  const last = phaseOf(o.steps);
  lines.push(JSON.stringify({
    step: o.steps,
    phase: last,
    val_loss: 1.93,
    val_bpb: 1.93 / Math.LN2,
    final: true,
    ...(o.schedule === "dense" ? {} : { val_loss_moe: 1.98, top_k: 4 }),
  }));
  return lines;
}

/** Writes a run folder (`metrics.jsonl`, and `final.safetensors` when asked); returns it. */
export async function writeSyntheticRun(dir: string, o: SyntheticRun): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const lines = syntheticMetrics(o);
  await Deno.writeTextFile(join(dir, "metrics.jsonl"), lines.map((l) => l + "\n").join(""));
  if (o.checkpoint) {
    const acc = {
      steps: { dense: 0, sparse: 0 },
      ffn_flops: { dense: 0, sparse: 0 },
      ffn_flops_dense: 0,
      ms: { dense: 0, sparse: 0 },
      overhead_ms: { monitor: 1500 },
    };
    for (const l of lines) {
      const m = JSON.parse(l);
      if (m.event || m.final) continue;
      const p = m.phase as "dense" | "sparse";
      acc.steps[p]++;
      acc.ffn_flops[p] += m.ffn_flops;
      acc.ffn_flops_dense += m.ffn_flops_dense;
      acc.ms[p] += m.ms_per_step;
    }
    await writeTinyCheckpoint(join(dir, "final.safetensors"), {
      train: {
        step: o.steps,
        phase: "dense",
        config: {
          schedule: o.schedule,
          stable_threshold: o.threshold ?? 0.9,
          steps: o.steps,
        },
        accounting: acc,
      },
    });
  }
  return dir;
}

/** An `ssd bench --json` document (pipelines/bench/json.ts) for E experts at each k. */
export function benchDoc(checkpoint: string, ks: number[], experts = 16): Record<string, unknown> {
  const denseFlops = 524288;
  const row = (k: number | null) => {
    const share = k === null ? 1 : k / experts;
    return {
      mode: k === null ? "dense" : "moe",
      top_k: k,
      ffn_flops_per_token: Math.round(denseFlops * share),
      val_loss: 1.93 + (k === null ? 0 : 0.2 * (1 - share)),
      val_bpb: 2.78,
      prefill: { batch: 8, tokens_per_s: 12000 / (0.5 + 0.5 * share), ms: 42.1, ffn_share: 0.48 },
      decode: [
        {
          batch: 1,
          tokens_per_s: 300 / (0.6 + 0.4 * share),
          ms_per_token: 3.3 * (0.6 + 0.4 * share),
          ffn_ms_per_token: 0.9,
          ffn_share: 0.27,
        },
        { batch: 8, tokens_per_s: 1900, ms_per_token: 4.2, ffn_ms_per_token: 1.5, ffn_share: 0.35 },
      ],
    };
  };
  return {
    checkpoint,
    experts,
    moefied: false,
    model: { d_model: 128, n_layer: 3, n_head: 4, d_ff: 512, ctx: 64, vocab: 256 },
    prompt_len: 64,
    gen: 64,
    device: "llvmpipe (test fixture)",
    rows: [row(null), ...ks.map(row)],
  };
}

/** Writes `benchDoc(...)` to `path`; returns it. */
export async function writeBench(path: string, checkpoint: string, ks: number[]): Promise<string> {
  await Deno.writeTextFile(path, JSON.stringify(benchDoc(checkpoint, ks), null, 2));
  return path;
}

/** The `<svg>...</svg>` of each `<figure data-plot="ID">` of a report page, by id. */
export function figures(html: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /<figure id="plot-([\w-]+)" data-plot="\1"[^>]*>([\s\S]*?)<\/figure>/g;
  for (const m of html.matchAll(re)) out.set(m[1], m[2]);
  return out;
}
