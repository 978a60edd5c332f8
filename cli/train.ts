/**
 * `ssd train`: flags → `TrainConfig` → `runTrain`. Progress goes to stderr,
 * the summary to stdout (`--json`: one JSON document). Ctrl-C stops after
 * the current step and saves a checkpoint before exiting (code 130).
 */
import { Command, Option } from "commander";
import { resolveTrainConfig, type TrainConfig } from "../pipelines/train/config.ts";
import {
  resolveResumePath,
  runTrain,
  savedTrainConfig,
  type TrainSummary,
} from "../pipelines/train/run.ts";
import { FAMILIES } from "../pipelines/train/kernel_profile.ts";
import { DEFAULT_SCHEDULE_CONFIG } from "../pipelines/train/schedule.ts";
import { intArg, numArg, snakeKeys } from "./_flags.ts";
import { fmtDuration, progressHooks, scheduleOptions } from "./_train_flags.ts";

/** Flags that are not config keys. */
interface TrainFlags {
  config?: string;
  resume?: string;
  profile?: boolean;
  json?: boolean;
  [key: string]: unknown;
}

/** Builds the `train` subcommand. */
export function trainCommand(): Command {
  const cmd = new Command("train")
    .description(
      "pre-train a GPT on the embedded Brown corpus or --data: dense, static sparse or SSD schedule",
    )
    .option("--preset <name>", "start from a preset: default or tiny")
    .option("--config <file>", "JSON file of config keys (flags override it)")
    .option("--steps <n>", "optimizer steps (default 2000)", intArg)
    .option("--tokens <n>", "train for this many tokens instead of --steps", intArg)
    .option("--batch-size <n>", "sequences per step (default 8)", intArg)
    .option("--ctx <n>", "context length (default 64)", intArg)
    .option("--d-model <n>", "residual width (default 128)", intArg)
    .option("--n-layer <n>", "transformer blocks (default 3)", intArg)
    .option("--n-head <n>", "attention heads (default 4)", intArg)
    .option("--d-ff <n>", "FFN width (default 512)", intArg)
    .option("--no-bias", "no biases in Linear and LayerNorm")
    .addOption(new Option("--activation <fn>", "FFN activation").choices(["relu", "gelu"]))
    .option("--lr <x>", "peak learning rate (default 2e-3)", numArg)
    .option("--min-lr <x>", "cosine floor (default 2e-4)", numArg)
    .option("--warmup <n>", "linear warmup steps (default 100)", intArg)
    .option("--weight-decay <x>", "AdamW weight decay (default 0.1)", numArg)
    .option("--beta1 <x>", "AdamW beta1 (default 0.9)", numArg)
    .option("--beta2 <x>", "AdamW beta2 (default 0.99)", numArg)
    .option("--grad-clip <x>", "global gradient-norm clip, 0 = off (default 1)", numArg)
    .option("--eval-every <n>", "validation every N steps, 0 = only at the end", intArg)
    .option("--eval-tokens <n>", "validation tokens per evaluation during training", intArg)
    .option("--eval-batch <n>", "windows per forward when evaluating (default 64)", intArg)
    .option("--val-tokens <n>", "validation tokens of the final evaluation (default: all)", intArg)
    .option("--save-every <n>", "checkpoint every N steps, 0 = only the final one", intArg)
    .option("--seed <n>", "seed of init and data order (default 1337)", intArg)
    .option("--out <dir>", "output folder (default runs/train)")
    .option("--data <path>", "text file or folder of .txt files instead of the Brown corpus")
    .option("--val <path>", "validation text (default: the last 5% of --data)")
    .addOption(
      new Option("--schedule <kind>", "dense, sparse (static MoE from --sparse-from) or ssd")
        .choices(["dense", "sparse", "ssd"]),
    );
  return scheduleOptions(cmd, DEFAULT_SCHEDULE_CONFIG)
    .option("--sparse-from <n>", "--schedule sparse: step of the switch (default 10%)", intArg)
    .option("--fresh-margin <x>", "k-means fresh start must beat warm by this share (0.01)", numArg)
    .option("--resume <path>", "continue from a checkpoint file or run folder")
    .option("--profile", "time kernel families with GPU timestamps over a few steps")
    .option("--json", "print the summary as one JSON document")
    .action(async (flags: TrainFlags) => {
      const { config: configFile, resume, profile, json, ...rest } = flags;
      const given = snakeKeys(rest);
      // commander sets bias=true when --no-bias is absent: keep only a real --no-bias.
      if (given.bias === true) delete given.bias;
      let config: TrainConfig;
      if (resume) {
        // The saved config, with the flags given now on top (e.g. more --steps).
        const saved = await savedTrainConfig(await resolveResumePath(resume));
        if (given.steps !== undefined && given.tokens === undefined) given.tokens = null;
        config = await resolveTrainConfig({ ...saved, ...given });
      } else {
        config = await resolveTrainConfig(given, configFile);
      }
      const summary = await trainWithProgress(config, { resume: resume ?? null, profile, json });
      if (summary.interrupted) Deno.exit(130);
    });
}

async function trainWithProgress(
  config: TrainConfig,
  opts: { resume: string | null; profile?: boolean; json?: boolean },
): Promise<TrainSummary> {
  const { err, tty, ...hooks } = progressHooks(config.steps);
  const controller = new AbortController();
  const onSigint = () => {
    err("\nssd: interrupted: saving a checkpoint after this step\n");
    controller.abort();
  };
  Deno.addSignalListener("SIGINT", onSigint);
  let summary: TrainSummary;
  try {
    summary = await runTrain(config, {
      resume: opts.resume,
      profile: opts.profile,
      signal: controller.signal,
      hooks,
    });
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
  }
  if (tty) err("\n");
  if (opts.json) console.log(JSON.stringify(summary, null, 2));
  else console.log(formatSummary(summary));
  return summary;
}

/** Human-readable summary of a run. */
export function formatSummary(s: TrainSummary): string {
  const lines = [
    `params        ${s.params.toLocaleString("en-US")}`,
    `steps         ${s.step} (${s.tokens.toLocaleString("en-US")} tokens)`,
    `wall time     ${fmtDuration(s.wall_s)}`,
    `throughput    ${Math.round(s.tokens_per_s)} tokens/s, ${s.ms_per_step.toFixed(1)} ms/step`,
    `final loss    ${s.final_loss.toFixed(4)} (train)`,
  ];
  if (s.val) {
    lines.push(
      `val loss      ${s.val.nll.toFixed(4)} nats/token, ${s.val.bpb.toFixed(4)} bits/byte, ` +
        `ppl ${s.val.ppl.toFixed(2)} (${s.val.tokens} tokens)`,
    );
  }
  if (s.profile) {
    lines.push("step time by kernel family (GPU timestamps):");
    for (const f of FAMILIES) {
      lines.push(
        `  ${f.padEnd(10)} ${(100 * s.profile.share[f]).toFixed(1).padStart(5)}%  ` +
          `${s.profile.ms[f].toFixed(1)} ms`,
      );
    }
  }
  lines.push(`checkpoints   ${s.checkpoints.join(", ") || "(none)"}`);
  if (s.interrupted) lines.push("interrupted: resume with --resume " + s.config.out);
  return lines.join("\n");
}
