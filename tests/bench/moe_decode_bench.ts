/**
 * Decode FFN time, dense vs MoE at each k, on this adapter (not a test):
 * `deno task bench:decode [--reps R] [--batch 1,8] [--topk 1,2,4,8,16]
 * [--calls 400] [--strategy fused/1|fused/2|two-pass] [--no-profile] [--json]`.
 *
 * Shape: the default model's FFN (C 128, d_ff 512, E 16, s = 32), random
 * weights, a random router (so experts are picked roughly evenly). Rows:
 * - dense: `ffnDecode`, the decode GEMV kernels over the whole FFN (the
 *   reference every "vs dense" divides by);
 * - moe: `moeFfnDecode` at each k (routing included, fused in the kernel);
 * - dense/linear: `linear → relu → linear` from core/ops (the prefill
 *   path's autotuned matmul), for scale.
 * `--strategy` forces the decode kernels' strategy (see
 * `gpu/kernels/moe_decode.ts`). Each call's output is released at once,
 * as a decode step would: the pool hands the same buffer back and the
 * recorder's bind groups hit.
 *
 * Timing: `--calls` calls (default 400) recorded in one submission with
 * one host wait, in `--reps` rounds (default 7) in which the configs take
 * turns, so that other jobs' load on the shared cores falls on all alike.
 * A host wait alone costs ~12 ms on llvmpipe, so µs/call is the slope
 * between the fastest batch of `--calls` calls and the fastest of
 * calls/10; "median" is the median of the rounds' slopes; "with wait" the
 * fastest mean over `--calls` calls, wait included. GPU time per kernel
 * (timestamp queries, fastest of 3 batches of 50 calls; each dispatch then
 * runs in a pass of its own, which adds ~50 µs per dispatch on llvmpipe)
 * follows unless `--no-profile`.
 */
import { BENCH_FFN, benchWeights, flag } from "./_compare.ts";
import { ffnDecode, type MoeDecodeStrategy, moeFfnDecode } from "../../core/nn/moe_ffn_decode.ts";
import { moeFfnFlops } from "../../core/nn/moe_ffn.ts";
import { relu } from "../../core/ops/activation.ts";
import { linear } from "../../core/ops/matmul.ts";
import { Rng } from "../../core/rng.ts";
import { tidy } from "../../core/scope.ts";
import { noGrad } from "../../core/tape.ts";
import { type Tensor, tensor } from "../../core/tensor.ts";
import { moeDecodeStrategy } from "../../gpu/kernels/moe_decode.ts";
import { initGpu } from "../../gpu/runtime.ts";

const { C, DFF, E } = BENCH_FFN;
const list = (s: string) => s.split(",").map(Number);
const asJson = Deno.args.includes("--json");
const reps = Number(flag("--reps") ?? 7);
const calls = Number(flag("--calls") ?? 400);
const batches = list(flag("--batch") ?? "1,8");
const topks = list(flag("--topk") ?? "1,2,4,8,16");
const profile = !Deno.args.includes("--no-profile");
// A forced kernel strategy for every decode row (default: moeDecodeStrategy's pick).
const forced = flag("--strategy");
const strategy: MoeDecodeStrategy | undefined = forced === undefined
  ? undefined
  : forced === "two-pass"
  ? { kind: "two-pass" }
  : { kind: "fused", parts: Number(forced.split("/")[1] ?? 1) };

const g = await initGpu();
const log = (s: string) => asJson ? console.error(s) : console.log(s);
log(`adapter: ${g.dev.summary.name}; FFN C ${C}, d_ff ${DFF}, E ${E}`);

const rng = new Rng(11);
const w = benchWeights(rng);

interface Config {
  mode: string;
  k: number | null;
  flops: number;
  strategy: string;
  call: () => Tensor;
}

/** One result row. */
interface Row {
  batch: number;
  mode: string;
  k: number | null;
  strategy: string;
  usPerCall: number;
  median: number;
  usWithWait: number;
  usPerToken: number;
  gflops: number;
  vsDense: number;
  kernels?: Record<string, number>;
}

/** Wall ms of n calls recorded together and waited on once. */
async function timeCalls(call: () => Tensor, n: number): Promise<number> {
  const t0 = performance.now();
  tidy(() => {
    for (let i = 0; i < n; i++) call().release();
  });
  await g.recorder.sync();
  return performance.now() - t0;
}

/** GPU µs per call of each kernel, fastest of 3 batches of `n` profiled calls. */
async function kernelTimes(call: () => Tensor, n: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let r = 0; r < 3; r++) {
    tidy(() => {
      for (let i = 0; i < n; i++) call().release();
    });
    for (const [name, t] of await g.recorder.takeProfile()) {
      out[name] = Math.min(out[name] ?? Infinity, r1(t.ms * 1000 / n));
    }
  }
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const r1 = (x: number) => Math.round(x * 10) / 10;
const r2 = (x: number) => Math.round(x * 100) / 100;
const fmt = (cells: (string | number)[], widths: number[]) =>
  cells.map((c, i) => String(c).padEnd(widths[i])).join("");
const WIDTHS = [7, 14, 5, 11, 10, 10, 11, 10, 9, 8];

const rows: Row[] = [];
const wgBytes = g.device.limits.maxComputeWorkgroupStorageSize;
for (const N of batches) {
  const h = tensor(rng.normalArray(N * C, 1), [N, C]);
  const strat = (routed: boolean, k: number) => {
    if (forced) return forced;
    const s = moeDecodeStrategy({ N, C, dff: DFF, E: routed ? E : 1, k }, routed, wgBytes);
    return s.kind === "fused" ? `fused/${s.parts}` : s.kind;
  };
  const configs: Config[] = [{
    mode: "dense",
    k: null,
    flops: 4 * N * C * DFF,
    strategy: strat(false, 1),
    call: () => noGrad(() => ffnDecode(h, w, "relu", { strategy })),
  }];
  for (const k of topks) {
    configs.push({
      mode: "moe",
      k,
      flops: moeFfnFlops(N, C, DFF, E, k),
      strategy: strat(true, k),
      call: () => noGrad(() => moeFfnDecode(h, w, E, k, "relu", { strategy })),
    });
  }
  configs.push({
    mode: "dense/linear",
    k: null,
    flops: 4 * N * C * DFF,
    strategy: "matmul",
    call: () => noGrad(() => linear(relu(linear(h, w.fcW, w.fcB)), w.projW, w.projB)),
  });

  for (const c of configs) await timeCalls(c.call, 2); // compiles the pipelines
  const few = Math.max(1, Math.round(calls / 10));
  const lo: number[][] = configs.map(() => []);
  const hi: number[][] = configs.map(() => []);
  for (let r = 0; r < reps; r++) {
    for (let i = 0; i < configs.length; i++) {
      lo[i].push(await timeCalls(configs[i].call, few));
      hi[i].push(await timeCalls(configs[i].call, calls));
    }
  }
  const slope = (a: number, b: number) => (b - a) * 1000 / (calls - few);
  const best = configs.map((_, i) => slope(Math.min(...lo[i]), Math.min(...hi[i])));
  const kernels: Record<string, number>[] = [];
  if (profile && g.recorder.setProfiling(true)) {
    for (const c of configs) kernels.push(await kernelTimes(c.call, Math.min(calls, 50)));
    g.recorder.setProfiling(false);
  }

  log(`\nbatch ${N}: µs per call (slope over ${few} → ${calls} calls, ${reps} rounds)`);
  const head = ["batch", "mode", "k", "strategy", "µs/call", "median", "with wait", "µs/token"];
  log(fmt([...head, "GFLOP/s", "vs dense"], WIDTHS));
  configs.forEach((c, i) => {
    const row: Row = {
      batch: N,
      mode: c.mode,
      k: c.k,
      strategy: c.strategy,
      usPerCall: r1(best[i]),
      median: r1(median(lo[i].map((l, r) => slope(l, hi[i][r])))),
      usWithWait: r1(Math.min(...hi[i]) * 1000 / calls),
      usPerToken: r1(best[i] / N),
      gflops: r2(c.flops / (best[i] * 1e3)),
      vsDense: r2(best[i] / best[0]),
      ...(kernels[i] ? { kernels: kernels[i] } : {}),
    };
    rows.push(row);
    log(fmt([
      N,
      c.mode,
      c.k ?? "-",
      c.strategy,
      row.usPerCall,
      row.median,
      row.usWithWait,
      row.usPerToken,
      row.gflops,
      `${row.vsDense}x`,
    ], WIDTHS));
  });
  if (kernels.length > 0) {
    log(`GPU time per call by kernel (timestamps, one pass per dispatch), batch ${N}:`);
    configs.forEach((c, i) => {
      const parts = Object.entries(kernels[i]).map(([name, us]) => `${name} ${us} µs`);
      log(`  ${`${c.mode}${c.k ? ` k ${c.k}` : ""}`.padEnd(16)} ${parts.join(", ")}`);
    });
  }
  h.release();
}

const b1 = rows.filter((r) => r.batch === 1);
const d1 = b1.find((r) => r.mode === "dense");
const k4 = b1.find((r) => r.mode === "moe" && r.k === 4);
if (d1 && k4) {
  log(
    `\nbatch 1, k 4 vs dense: ${k4.usPerCall} / ${d1.usPerCall} µs = ${k4.vsDense}x ` +
      `(target: at most 0.5x)`,
  );
}
if (asJson) {
  console.log(JSON.stringify({ adapter: g.dev.summary.name, C, d_ff: DFF, E, reps, calls, rows }));
}
