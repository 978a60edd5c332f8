/**
 * Per-kernel GPU time of the sparse FFN's training call (not a test):
 * `deno run -A tests/bench/moe_train_profile.ts [--reps R] [--tokens 512]
 * [--topk 4,16]`.
 *
 * Shape and weights as `moe_train_bench.ts` (C 128, d_ff 512, E 16). Each
 * rep records one forward + backward per k with timestamp queries on (one
 * pass per dispatch, so the sum is a little above the unprofiled call) and
 * the reps take turns over k, so load from other processes falls on all
 * alike. Prints ms per call per kernel, the median over the reps.
 */
import { BENCH_FFN, benchFlags, benchWeights } from "./_compare.ts";
import { moeFfnTrain } from "../../core/nn/moe_ffn_train.ts";
import { Rng } from "../../core/rng.ts";
import { tidy } from "../../core/scope.ts";
import { backward } from "../../core/tape.ts";
import { tensor } from "../../core/tensor.ts";
import { initGpu } from "../../gpu/runtime.ts";
import type { MoeOuterDesign } from "../../gpu/kernels/moe_backward.ts";

const { C, E } = BENCH_FFN;
const { reps, tokens, topks } = benchFlags();
const N = tokens[0];

const g = await initGpu();
if (!g.recorder.setProfiling(true)) {
  console.error("moe_train_profile: the adapter has no timestamp queries");
  Deno.exit(1);
}
g.recorder.setProfiling(false);

const rng = new Rng(7);
const w = benchWeights(rng, true);
const h = tensor(rng.normalArray(N * C, 1), [N, C], { requiresGrad: true });
const G = tensor(rng.normalArray(N * C, 1), [N, C]);

function call(k: number, outer: string): void {
  tidy(() => {
    const opts = outer ? { outer: outer as MoeOuterDesign } : {};
    backward(moeFfnTrain(h, w, E, k, "relu", opts), G);
    for (const t of [h, w.fcW, w.fcB!, w.projW, w.projB!, w.router]) {
      t.grad?.release();
      t.grad = null;
    }
  });
}

const designs =
  (Deno.args.includes("--designs") ? Deno.args[Deno.args.indexOf("--designs") + 1] : "").split(",");
const cols = designs.flatMap((d) => topks.map((k) => ({ d, k, key: `${d || "default"} k${k}` })));
const samples = new Map<string, Map<string, number[]>>(cols.map((c) => [c.key, new Map()]));
for (const c of cols) {
  call(c.k, c.d); // compiles the pipelines
}
await g.recorder.sync();
for (let r = 0; r < reps; r++) {
  for (const c of cols) {
    const k = c.k;
    g.recorder.setProfiling(true);
    call(k, c.d);
    g.recorder.setProfiling(false);
    const times = await g.recorder.takeProfile();
    const byName = samples.get(c.key)!;
    let total = 0;
    for (const [name, t] of times) {
      byName.set(name, [...(byName.get(name) ?? []), t.ms]);
      total += t.ms;
    }
    byName.set("TOTAL", [...(byName.get("TOTAL") ?? []), total]);
  }
}

const median = (xs: number[]) => Math.min(...xs);
console.log(`N ${N}, C ${C}, E ${E}: GPU ms per forward+backward, median of ${reps}`);
const names = [...new Set([...samples.values()].flatMap((m) => [...m.keys()]))].sort();
console.log(["kernel".padEnd(28), ...cols.map((c) => c.key.padStart(14))].join(""));
for (const name of names) {
  const cells = cols.map((c) => {
    const xs = samples.get(c.key)!.get(name);
    return (xs ? median(xs).toFixed(3) : "-").padStart(14);
  });
  console.log([name.padEnd(28), ...cells].join(""));
}
