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

const C = 128;
const DFF = 512;
const E = 16;
/** Wall time aimed at per timed batch of calls. */
const BATCH_MS = 600;

function flag(name: string): string | undefined {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}
const list = (s: string) => s.split(",").map(Number);
const asJson = Deno.args.includes("--json");
const reps = Number(flag("--reps") ?? 3);
const tokens = list(flag("--tokens") ?? "512,4096");
const topks = list(flag("--topk") ?? "4,8,16");
const designs = (flag("--designs")?.split(",") ??
  (textureDesignSupported() ? ["texture", "buffer"] : ["buffer"])) as MoeDesign[];

const g = await initGpu();
const log = (s: string) => asJson ? console.error(s) : console.log(s);
log(`adapter: ${g.dev.summary.name}; dense matmul: ${configName(matmulChoice(g).config)}`);

const rng = new Rng(7);
const w = {
  fcW: tensor(rng.normalArray(DFF * C, 0.05), [DFF, C]),
  fcB: tensor(rng.normalArray(DFF, 0.02), [DFF]),
  projW: tensor(rng.normalArray(C * DFF, 0.05), [C, DFF]),
  projB: tensor(rng.normalArray(C, 0.02), [C]),
  router: tensor(rng.normalArray(E * C, 1), [E, C]),
};

/** Records `n` calls in one scope and returns after one host wait: ms per call. */
async function batch(call: () => void, n: number): Promise<number> {
  const t0 = performance.now();
  noGrad(() =>
    tidy(() => {
      for (let i = 0; i < n; i++) call();
    })
  );
  await g.recorder.sync();
  return (performance.now() - t0) / n;
}

interface Row {
  tokens: number;
  mode: string;
  k: number | null;
  ms: number;
  range: [number, number];
  gflop: number;
  speedup: number;
}
const rows: Row[] = [];
const r2 = (x: number) => Math.round(x * 100) / 100;

log(`\nFFN C ${C}, d_ff ${DFF}, E ${E}: ms per call, best of ${reps} [range]`);
log(["tokens", "mode", "k", "ms", "range", "GFLOP", "vs dense"].map((s) => s.padEnd(12)).join(""));
for (const N of tokens) {
  const h = tensor(rng.normalArray(N * C, 1), [N, C]);
  const configs: { mode: string; k: number | null; flops: number; call: () => void }[] = [{
    mode: "dense",
    k: null,
    flops: 4 * N * C * DFF,
    call: () => linear(relu(linear(h, w.fcW, w.fcB)), w.projW, w.projB),
  }];
  for (const design of designs) {
    for (const k of topks) {
      configs.push({
        mode: `moe/${design}`,
        k,
        flops: moeFfnFlops(N, C, DFF, E, k),
        call: () => moeFfn(h, w, E, k, "relu", { design }),
      });
    }
  }
  // Calls per batch from one timed call each (after a compile call); then the
  // configs take turns, rep by rep, so that load from other processes on the
  // shared cores falls on all of them alike.
  const iters: number[] = [];
  for (const c of configs) {
    await batch(c.call, 1);
    iters.push(Math.max(2, Math.min(64, Math.round(BATCH_MS / await batch(c.call, 1)))));
  }
  const ms: number[][] = configs.map(() => []);
  for (let r = 0; r < reps; r++) {
    for (let i = 0; i < configs.length; i++) ms[i].push(await batch(configs[i].call, iters[i]));
  }
  const dense = Math.min(...ms[0]);
  configs.forEach((c, i) => {
    const best = Math.min(...ms[i]);
    const row: Row = {
      tokens: N,
      mode: c.mode,
      k: c.k,
      ms: r2(best),
      range: [r2(best), r2(Math.max(...ms[i]))],
      gflop: r2(c.flops / 1e9),
      speedup: r2(dense / best),
    };
    rows.push(row);
    log(
      [N, c.mode, c.k ?? "-", row.ms, `${row.range[0]}-${row.range[1]}`, row.gflop]
        .map((s) => String(s).padEnd(12)).join("") + `${row.speedup}x`,
    );
  });
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
