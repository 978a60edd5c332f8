/**
 * `ssd demo` (`deno task demo`): the main job on the embedded corpus: SSD
 * training, profile, bench and report in one run (pipelines/demo.ts). Takes
 * `ssd train`'s model and schedule flags to change the demo's config;
 * progress on stderr (none with `--json`), at the end where every output
 * went (`--json`: one JSON document).
 */
import { Command, Option } from "commander";
import { defaultTopK } from "../core/nn/moe_layout.ts";
import { DEMO_TRAIN_OVERRIDES as DEMO, type DemoResult, runDemo } from "../pipelines/demo.ts";
import { DEFAULT_SCHEDULE_CONFIG } from "../pipelines/train/schedule.ts";
import { intArg, intListArg, snakeKeys } from "./_flags.ts";
import { withProgress } from "./_progress.ts";
import { scheduleOptions, trainHooks } from "./_train_flags.ts";

interface DemoFlags {
  json?: boolean;
  force?: boolean;
  benchBatch?: number[];
  benchTokens?: number;
  [key: string]: unknown;
}

/** Builds the `demo` subcommand. */
export function demoCommand(): Command {
  const cmd = new Command("demo")
    .description(
      "the main job end to end on the embedded Brown corpus: train with the SSD schedule, " +
        "profile the checkpoints, bench the final model dense vs MoE, write <out>/report.html",
    )
    .option("--preset <name>", "model and run preset: default or tiny")
    .option("--steps <n>", `optimizer steps (default ${DEMO.steps})`, intArg)
    .option("--out <dir>", `run folder (default ${DEMO.out})`)
    .option("--seed <n>", "seed of init and data order (default 1337)", intArg)
    .option("--batch-size <n>", "sequences per step (default 8)", intArg)
    .option(
      "--save-every <n>",
      `checkpoint every N steps, profiled later (default ${DEMO.save_every})`,
      intArg,
    )
    .option("--eval-every <n>", `validation every N steps (default ${DEMO.eval_every})`, intArg)
    .option(
      "--val-tokens <n>",
      `validation tokens of the final losses (default ${DEMO.val_tokens})`,
      intArg,
    )
    .addOption(
      new Option("--schedule <kind>", "dense, sparse or ssd (default ssd)")
        .choices(["dense", "sparse", "ssd"]),
    );
  return scheduleOptions(cmd, { ...DEFAULT_SCHEDULE_CONFIG, ...DEMO })
    .option("--bench-batch <list>", "decode batches of the bench besides 1 (default 8)", intListArg)
    .option("--bench-tokens <n>", "validation tokens of the bench's loss per k", intArg)
    .option("--force", "replace an earlier run in --out (its checkpoints and metrics)")
    .option("--json", "print the outputs and headline figures as one JSON document")
    .action(async (flags: DemoFlags) => {
      const { json, force, benchBatch, benchTokens, ...rest } = flags;
      const train = snakeKeys(rest);
      const result = await withProgress({ quiet: json }, (progress) => {
        const hooks = trainHooks(progress);
        return runDemo({
          train,
          bench_batch: benchBatch,
          bench_tokens: benchTokens,
          log: hooks.log,
          trainHooks: hooks,
          force,
        });
      });
      console.log(json ? JSON.stringify(demoJson(result), null, 2) : formatDemo(result));
    });
}

/** Headline figures: final losses, FLOPs, and the bench's dense and trained-k rows. */
function headline(r: DemoResult) {
  const t = r.train;
  const k = t.val_moe?.k ?? t.config.top_k ?? defaultTopK(t.config.experts);
  const dense = r.bench.rows[0];
  const moe = r.bench.rows.find((row) => row.top_k === k) ?? null;
  return { t, k, dense, moe };
}

/** The `--json` document. */
export function demoJson(r: DemoResult): Record<string, unknown> {
  const { t, k, dense, moe } = headline(r);
  return {
    out: r.out,
    files: r.files,
    seconds: r.seconds,
    train: {
      steps: t.step,
      val_loss: t.val?.nll ?? null,
      val_loss_moe: t.val_moe?.nll ?? null,
      top_k: k,
      ffn_flops_ratio: t.accounting.flops_ratio,
      sparse_share: t.accounting.sparse.share,
      switches: t.switches,
    },
    bench: { dense, moe },
  };
}

function pct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

/** Where everything went, then the headline numbers. */
export function formatDemo(r: DemoResult): string {
  const { t, k, dense, moe } = headline(r);
  const s = r.seconds;
  const row = (label: string, text: string) => `${label.padEnd(12)}${text}`;
  const lines = [
    row("run", r.out),
    row("metrics", r.files.metrics),
    row("checkpoints", r.files.checkpoints.join(", ")),
    row("profile", `${r.files.profile}/`),
    row("bench", r.files.bench),
    row("report", r.files.report),
    "",
    row(
      "time",
      `${s.total.toFixed(0)} s (train ${s.train.toFixed(0)}, profile ${s.profile.toFixed(0)}, ` +
        `bench ${s.bench.toFixed(0)}, report ${s.report.toFixed(1)})`,
    ),
    row(
      "schedule",
      `${t.switches.length} switches, sparse ${pct(t.accounting.sparse.share)} of steps, ` +
        `FFN FLOPs ${t.accounting.flops_ratio.toFixed(2)}x dense`,
    ),
  ];
  if (t.val) lines.push(row("val loss", `dense ${t.val.nll.toFixed(4)} nats/token`));
  if (t.val_moe) {
    const gap = pct(t.val_moe.nll / t.val!.nll - 1);
    lines.push(row("", `MoE k=${t.val_moe.k} ${t.val_moe.nll.toFixed(4)} (${gap} vs dense)`));
  }
  if (moe) {
    const b1 = (row: typeof dense) => row.decode.find((d) => d.batch === 1);
    const [db, mb] = [b1(dense), b1(moe)];
    if (db && mb) {
      const ratio = (mb.ms_per_token / db.ms_per_token).toFixed(2);
      lines.push(
        row(
          "decode b=1",
          `dense ${db.ms_per_token.toFixed(1)} ms/token, MoE k=${k} ` +
            `${mb.ms_per_token.toFixed(1)} (${ratio}x)`,
        ),
      );
    }
  }
  return lines.join("\n");
}
