/**
 * Timing of a dense FFN against MoE variants for the MoE benchmarks: each
 * config is timed in batches of calls with one host wait per batch, the
 * configs taking turns rep by rep so that load from other processes on the
 * shared cores falls on all of them alike. Prints and returns one row each.
 */
import type { MoeWeights } from "../../core/nn/moe_ffn.ts";
import type { Rng } from "../../core/rng.ts";
import { tidy } from "../../core/scope.ts";
import { tensor } from "../../core/tensor.ts";
import { gpu } from "../../gpu/runtime.ts";

/** One timed variant; the first config of a comparison is the dense reference. */
export interface BenchConfig {
  /** "dense" or "moe". */
  mode: string;
  /** Experts per token (null for dense). */
  k: number | null;
  /** FLOPs of one call. */
  flops: number;
  /** Records one call (inside a scope the helper opens). */
  call: () => void;
}

/** A result row. */
export interface CompareRow {
  tokens: number;
  mode: string;
  k: number | null;
  ms: number;
  range: [number, number];
  gflop: number;
  speedup: number;
}

const r2 = (x: number) => Math.round(x * 100) / 100;

/** FFN shape the MoE benchmarks time: the default model's. */
export const BENCH_FFN = Object.freeze({ C: 128, DFF: 512, E: 16 });
/**
 * Random weights of a `BENCH_FFN` layer drawn from `rng` (c_fc, c_proj std
 * 0.05, biases 0.02, a unit-normal router so experts are picked about evenly).
 */
export function benchWeights(rng: Rng, requiresGrad = false): MoeWeights {
  const { C, DFF, E } = BENCH_FFN;
  const t = (n: number, shape: number[], std: number) =>
    tensor(rng.normalArray(n, std), shape, { requiresGrad });
  return {
    fcW: t(DFF * C, [DFF, C], 0.05),
    fcB: t(DFF, [DFF], 0.02),
    projW: t(C * DFF, [C, DFF], 0.05),
    projB: t(C, [C], 0.02),
    router: t(E * C, [E, C], 1),
  };
}

/** Wall time aimed at per timed batch of calls. */
export const BATCH_MS = 600;

/** `--name value` of the command line, if given. */
export function flag(name: string): string | undefined {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}

/** The flags both MoE benchmarks take: `--json`, `--reps`, `--tokens`, `--topk`. */
export function benchFlags(): { asJson: boolean; reps: number; tokens: number[]; topks: number[] } {
  const list = (s: string) => s.split(",").map(Number);
  return {
    asJson: Deno.args.includes("--json"),
    reps: Number(flag("--reps") ?? 3),
    tokens: list(flag("--tokens") ?? "512,4096"),
    topks: list(flag("--topk") ?? "4,8,16"),
  };
}

/** Mean ms per call of `n` calls recorded together and waited on once. */
async function batch(call: () => void, n: number): Promise<number> {
  const t0 = performance.now();
  tidy(() => {
    for (let i = 0; i < n; i++) call();
  });
  await gpu().recorder.sync();
  return (performance.now() - t0) / n;
}

/** Times `configs` (the first is the reference) and logs one line per row. */
export async function compareConfigs(
  tokens: number,
  configs: BenchConfig[],
  reps: number,
  batchMs: number,
  maxIters: number,
  log: (line: string) => void,
): Promise<CompareRow[]> {
  const iters: number[] = [];
  for (const c of configs) {
    await batch(c.call, 1); // compiles the pipelines
    iters.push(Math.max(2, Math.min(maxIters, Math.round(batchMs / await batch(c.call, 1)))));
  }
  const ms: number[][] = configs.map(() => []);
  for (let r = 0; r < reps; r++) {
    for (let i = 0; i < configs.length; i++) ms[i].push(await batch(configs[i].call, iters[i]));
  }
  const dense = Math.min(...ms[0]);
  return configs.map((c, i) => {
    const best = Math.min(...ms[i]);
    const row: CompareRow = {
      tokens,
      mode: c.mode,
      k: c.k,
      ms: r2(best),
      range: [r2(best), r2(Math.max(...ms[i]))],
      gflop: r2(c.flops / 1e9),
      speedup: r2(dense / best),
    };
    log(
      [tokens, c.mode, c.k ?? "-", row.ms, `${row.range[0]}-${row.range[1]}`, row.gflop]
        .map((s) => String(s).padEnd(12)).join("") + `${row.speedup}x`,
    );
    return row;
  });
}
