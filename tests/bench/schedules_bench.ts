/**
 * `deno task bench:schedules`: trains the same config and seed three times
 * on the embedded corpus, with `--schedule dense`, `sparse` (the static
 * baseline: MoE-fied once at `--sparse-from`) and `ssd`, and prints one
 * comparison table: final validation bits/byte dense-mode and MoE-mode (at
 * the trained top-k), wall time, FFN FLOPs, and speedups against dense.
 * `--json` prints one JSON document; any other `--key value` pair is a train
 * flag applied to all three runs (e.g. `--steps 2000`, `--stable-threshold 0.8`).
 *
 * Default: the demo's run (`DEMO_TRAIN_OVERRIDES`: the default model, 1500
 * steps, SSD threshold 0.85, sparse phases of 400 steps), final loss on the
 * first 65,536 validation bytes: about 20 minutes on the 2-core llvmpipe
 * machine. The default threshold, 0.9, is reached only near 75% of such a
 * run (`--stable-threshold 0.9 --steps 2000` to see it).
 */
import { join } from "node:path";
import { DEMO_TRAIN_OVERRIDES } from "../../pipelines/demo.ts";
import { resolveTrainConfig } from "../../pipelines/train/config.ts";
import { runTrain, type TrainSummary } from "../../pipelines/train/run.ts";

const args = [...Deno.args];
const json = args.includes("--json");
const { steps, stable_threshold, sparse_steps, val_tokens } = DEMO_TRAIN_OVERRIDES;
const overrides: Record<string, unknown> = {
  steps,
  stable_threshold,
  sparse_steps,
  val_tokens,
  eval_every: 0,
  save_every: 0,
};
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--json" || !a.startsWith("--")) continue;
  const v = args[++i];
  overrides[a.slice(2).replaceAll("-", "_")] = isNaN(Number(v)) ? v : Number(v);
}
const out = await Deno.makeTempDir({ prefix: "ssd-schedules-" });
const runs: Record<string, TrainSummary> = {};
for (const schedule of ["dense", "sparse", "ssd"]) {
  const config = await resolveTrainConfig({ ...overrides, schedule, out: join(out, schedule) });
  const t0 = performance.now();
  console.error(`bench:schedules: --schedule ${schedule} (${config.steps} steps)`);
  runs[schedule] = await runTrain(config, {
    hooks: { log: (l) => l.startsWith("step ") && console.error(`  ${l}`) },
  });
  console.error(`  done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

const dense = runs.dense;
const rows = Object.entries(runs).map(([schedule, r]) => ({
  schedule,
  val_bpb: r.val!.bpb,
  val_bpb_moe: r.val_moe?.bpb ?? null,
  loss_gap_pct: (100 * (r.val!.nll - dense.val!.nll)) / dense.val!.nll,
  moe_gap_pct: r.val_moe ? (100 * (r.val_moe.nll - dense.val!.nll)) / dense.val!.nll : null,
  wall_s: r.accounting.wall_s,
  ffn_flops: r.accounting.ffn_flops,
  flops_vs_dense: r.accounting.ffn_flops / dense.accounting.ffn_flops,
  wall_vs_dense: r.accounting.wall_s / dense.accounting.wall_s,
  speedup: dense.accounting.wall_s / r.accounting.wall_s,
  sparse_share: r.accounting.sparse.share,
  switches: r.switches.length,
}));
if (json) {
  console.log(JSON.stringify({ config: dense.config, rows, runs }, null, 2));
} else {
  const c = dense.config;
  console.log(
    `config: d_model ${c.d_model}, ${c.n_layer} layers, d_ff ${c.d_ff}, ctx ${c.ctx}, batch ` +
      `${c.batch_size}, ${c.steps} steps, E ${c.experts}, top-k ${
        c.top_k ?? c.experts / 4
      }, seed ${c.seed}`,
  );
  console.log(
    "schedule  val bpb  (gap)    MoE bpb  (gap)     wall s  (x dense)  FFN GFLOP (x dense)  sparse share  switches",
  );
  for (const r of rows) {
    const moe = r.val_bpb_moe === null
      ? "-".padEnd(17)
      : `${r.val_bpb_moe.toFixed(4)} (${r.moe_gap_pct! >= 0 ? "+" : ""}${
        r.moe_gap_pct!.toFixed(2)
      }%)`.padEnd(17);
    console.log(
      `${r.schedule.padEnd(9)} ${r.val_bpb.toFixed(4)} (${r.loss_gap_pct >= 0 ? "+" : ""}${
        r.loss_gap_pct.toFixed(2)
      }%)  ${moe}  ${r.wall_s.toFixed(0).padStart(6)}  (${r.wall_vs_dense.toFixed(2)})     ${
        (r.ffn_flops / 1e9).toFixed(0).padStart(6)
      } (${r.flops_vs_dense.toFixed(2)})        ${
        (100 * r.sparse_share).toFixed(0).padStart(3)
      }%        ${r.switches}`,
    );
  }
}
await Deno.remove(out, { recursive: true });
