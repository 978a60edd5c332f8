/**
 * Per-kernel GPU time of the sparse FFN's training call (not a test):
 * `deno run -A tests/bench/moe_train_profile.ts [--reps R] [--tokens 512]
 * [--topk 4,16] [--outer wide,narrow]`.
 *
 * Shape and weights as `moe_train_bench.ts` (C 128, d_ff 512, E 16, the
 * first --tokens value). Each rep records one forward + backward per
 * (outer design, k) column with timestamp queries on (one pass per
 * dispatch, so the sum is a little above the unprofiled call), the columns
 * taking turns rep by rep so that load from other processes falls on all
 * alike. Prints ms per call per kernel, the best of the reps (the least
 * disturbed by other processes on shared cores). --outer: the tile designs
 * of the weight-gradient products to compare (default: the adapter's).
 */
import { BENCH_FFN, benchFlags, benchWeights, flag } from "./_compare.ts";
import { moeFfnTrain } from "../../core/nn/moe_ffn_train.ts";
import { Rng } from "../../core/rng.ts";
import { tidy } from "../../core/scope.ts";
import { backward } from "../../core/tape.ts";
import { tensor } from "../../core/tensor.ts";
import {
  MOE_OUTER_DESIGNS,
  type MoeOuterDesign,
  moeOuterDesign,
} from "../../gpu/kernels/moe_backward.ts";
import { initGpu } from "../../gpu/runtime.ts";

const { C, E } = BENCH_FFN;
const { reps, tokens, topks } = benchFlags();
const N = tokens[0];

const g = await initGpu();
const outers = (flag("--outer") ?? moeOuterDesign(g)).split(",");
for (const o of outers) {
  if (!(o in MOE_OUTER_DESIGNS)) {
    console.error(`moe_train_profile: unknown --outer ${o} (${Object.keys(MOE_OUTER_DESIGNS)})`);
    Deno.exit(1);
  }
}
if (!g.recorder.setProfiling(true)) {
  console.error("moe_train_profile: the adapter has no timestamp queries");
  Deno.exit(1);
}
g.recorder.setProfiling(false);

const rng = new Rng(7);
const w = benchWeights(rng, true);
const h = tensor(rng.normalArray(N * C, 1), [N, C], { requiresGrad: true });
const G = tensor(rng.normalArray(N * C, 1), [N, C]);

/** One forward + backward, gradients dropped. */
function call(k: number, outer: MoeOuterDesign): void {
  tidy(() => {
    backward(moeFfnTrain(h, w, E, k, "relu", { outer }), G);
    for (const t of [h, w.fcW, w.fcB!, w.projW, w.projB!, w.router]) {
      t.grad?.release();
      t.grad = null;
    }
  });
}

const cols = (outers as MoeOuterDesign[]).flatMap((outer) =>
  topks.map((k) => ({ outer, k, key: `${outer} k${k}` }))
);
const samples = new Map(cols.map((c) => [c.key, new Map<string, number[]>()]));
for (const c of cols) call(c.k, c.outer); // compiles the pipelines
await g.recorder.sync();
for (let r = 0; r < reps; r++) {
  for (const c of cols) {
    g.recorder.setProfiling(true);
    call(c.k, c.outer);
    g.recorder.setProfiling(false);
    const byName = samples.get(c.key)!;
    let total = 0;
    for (const [name, t] of await g.recorder.takeProfile()) {
      byName.set(name, [...(byName.get(name) ?? []), t.ms]);
      total += t.ms;
    }
    byName.set("TOTAL", [...(byName.get("TOTAL") ?? []), total]);
  }
}

console.log(`N ${N}, C ${C}, E ${E}: GPU ms per forward+backward, best of ${reps}`);
const names = [...new Set([...samples.values()].flatMap((m) => [...m.keys()]))].sort();
console.log(["kernel".padEnd(32), ...cols.map((c) => c.key.padStart(14))].join(""));
for (const name of names) {
  const cells = cols.map((c) => {
    const xs = samples.get(c.key)!.get(name);
    return (xs ? Math.min(...xs).toFixed(3) : "-").padStart(14);
  });
  console.log([name.padEnd(32), ...cells].join(""));
}
