/**
 * MoE FFN vs dense FFN time on this adapter (not a test):
 * `deno run -A tests/bench/moe_bench.ts [--reps R] [--tokens 512,4096]
 * [--topk 4,8,16] [--designs texture,buffer] [--profile] [--json]`.
 *
 * Shape: C = 128, d_ff = 512, E = 16 (s = 32), random weights and inputs
 * (the router is random too, so expert loads are roughly balanced). Dense
 * is `linear → relu → linear` (the model's FFN, autotuned matmul); MoE is
 * `moeFfn` at each k, router and grouping included. Each figure records
 * many calls in one submit and waits once (a host wait alone costs ~12 ms
 * on llvmpipe): ms per call, best of `--reps` batches (default 3), with the
 * range. `--profile` adds GPU time per kernel (timestamp queries, one pass
 * per dispatch, so slower overall) for the MoE at the first token count.
 */
import {
  BATCH_MS,
  BENCH_FFN,
  type BenchConfig,
  benchFlags,
  benchWeights,
  compareConfigs,
  type CompareRow,
  flag,
} from "./_compare.ts";
import { relu } from "../../core/ops/activation.ts";
import { linear } from "../../core/ops/matmul.ts";
import { moeFfn, moeFfnFlops } from "../../core/nn/moe_ffn.ts";
import { Rng } from "../../core/rng.ts";
import { tidy } from "../../core/scope.ts";
import { noGrad } from "../../core/tape.ts";
import { tensor } from "../../core/tensor.ts";
import { matmulChoice } from "../../gpu/autotune.ts";
import { configName, textureDesignSupported } from "../../gpu/kernels/matmul.ts";
import type { MoeDesign } from "../../gpu/kernels/moe.ts";
import { initGpu } from "../../gpu/runtime.ts";

const { C, DFF, E } = BENCH_FFN;
const { asJson, reps, tokens, topks } = benchFlags();
const designs = (flag("--designs")?.split(",") ??
  (textureDesignSupported() ? ["texture", "buffer"] : ["buffer"])) as MoeDesign[];

const g = await initGpu();
const log = (s: string) => asJson ? console.error(s) : console.log(s);
log(`adapter: ${g.dev.summary.name}; dense matmul: ${configName(matmulChoice(g).config)}`);

const rng = new Rng(7);
const w = benchWeights(rng);

/** Records `n` calls in one scope and returns after one host wait: ms per call. */
const rows: CompareRow[] = [];

log(`\nFFN C ${C}, d_ff ${DFF}, E ${E}: ms per call, best of ${reps} [range]`);
log(["tokens", "mode", "k", "ms", "range", "GFLOP", "vs dense"].map((s) => s.padEnd(12)).join(""));
for (const N of tokens) {
  const h = tensor(rng.normalArray(N * C, 1), [N, C]);
  const configs: BenchConfig[] = [{
    mode: "dense",
    k: null,
    flops: 4 * N * C * DFF,
    call: () => noGrad(() => linear(relu(linear(h, w.fcW, w.fcB)), w.projW, w.projB)),
  }];
  for (const design of designs) {
    for (const k of topks) {
      configs.push({
        mode: `moe/${design}`,
        k,
        flops: moeFfnFlops(N, C, DFF, E, k),
        call: () => noGrad(() => moeFfn(h, w, E, k, "relu", { design })),
      });
    }
  }
  // Calls per batch from one timed call each (after a compile call); then the
  // configs take turns, rep by rep, so that load from other processes on the
  // shared cores falls on all of them alike.
  rows.push(...(await compareConfigs(N, configs, reps, BATCH_MS, 64, log)));
  h.release();
}

let profile: Record<string, { ms: number; count: number }> | null = null;
if (Deno.args.includes("--profile") && g.recorder.setProfiling(true)) {
  const N = tokens[0];
  const h = tensor(rng.normalArray(N * C, 1), [N, C]);
  profile = {};
  for (const k of topks) {
    noGrad(() =>
      tidy(() => {
        for (let i = 0; i < 8; i++) moeFfn(h, w, E, k, "relu");
      })
    );
    const times = await g.recorder.takeProfile();
    log(`\nGPU time per call by kernel, N ${N}, k ${k} (texture design when available):`);
    for (const [name, t] of times) {
      log(`  ${name.padEnd(28)} ${(t.ms / 8).toFixed(3)} ms`);
      profile[`k${k}:${name}`] = { ms: t.ms / 8, count: t.count / 8 };
    }
  }
  g.recorder.setProfiling(false);
  h.release();
}

if (asJson) {
  console.log(
    JSON.stringify({ adapter: g.dev.summary.name, C, d_ff: DFF, E, reps, rows, profile }),
  );
}
