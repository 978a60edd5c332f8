/**
 * `ssd train`: flags → `TrainConfig` → `runTrain`. Progress and log lines go
 * to stderr (none with `--json`), the summary to stdout (`--json`: one JSON
 * document). SIGINT, SIGTERM and SIGHUP stop after the current step (or the
 * final evaluation) and save a checkpoint before exiting with 128 + the
 * signal's number.
 */
import { Command, Option } from "commander";
import {
  DEFAULT_TRAIN_CONFIG as D,
  resolveTrainConfig,
  type TrainConfig,
} from "../pipelines/train/config.ts";
import { resolveResume, RESUME_RULE } from "../pipelines/train/resume.ts";
import { runTrain, type TrainSummary } from "../pipelines/train/run.ts";
import { FAMILIES } from "../pipelines/train/kernel_profile.ts";
import { DEFAULT_SCHEDULE_CONFIG } from "../pipelines/train/schedule.ts";
import { intArg, numArg, snakeKeys } from "./_flags.ts";
import { fmtDuration } from "./_columns.ts";
import { Progress } from "./_progress.ts";
import { scheduleOptions, trainHooks } from "./_train_flags.ts";

/** Flags that are not config keys. */
interface TrainFlags {
  config?: string;
  resume?: string;
  force?: boolean;
  profile?: boolean;
  json?: boolean;
  [key: string]: unknown;
}

/** Exit code of a run stopped by each signal (128 + its number, as shells report it). */
const SIGNAL_EXIT: Record<"SIGINT" | "SIGTERM" | "SIGHUP", number> = {
  SIGINT: 130,
  SIGTERM: 143,
  SIGHUP: 129,
};

/** The model's flags, with the defaults in their help. */
function modelOptions(cmd: Command): Command {
  return cmd
    .option("--ctx <n>", `context length (default ${D.ctx})`, intArg)
    .option("--d-model <n>", `residual width (default ${D.d_model})`, intArg)
    .option("--n-layer <n>", `transformer blocks (default ${D.n_layer})`, intArg)
    .option("--n-head <n>", `attention heads (default ${D.n_head})`, intArg)
    .option("--d-ff <n>", `FFN width (default ${D.d_ff})`, intArg)
    .option("--no-bias", "no biases in Linear and LayerNorm")
    .addOption(
      new Option("--activation <fn>", `FFN activation (default ${D.activation})`)
        .choices(["relu", "gelu"]),
    );
}

/** The optimizer's flags, with the defaults in their help. */
function optimizerOptions(cmd: Command): Command {
  return cmd
    .option("--lr <x>", `peak learning rate (default ${D.lr})`, numArg)
    .option("--min-lr <x>", `cosine floor (default ${D.min_lr})`, numArg)
    .option("--warmup <n>", `linear warmup steps (default ${D.warmup})`, intArg)
    .option("--weight-decay <x>", `AdamW weight decay (default ${D.weight_decay})`, numArg)
    .option("--beta1 <x>", `AdamW beta1 (default ${D.beta1})`, numArg)
    .option("--beta2 <x>", `AdamW beta2 (default ${D.beta2})`, numArg)
    .option(
      "--grad-clip <x>",
      `global gradient-norm clip, 0 = off (default ${D.grad_clip})`,
      numArg,
    );
}

/** Builds the `train` subcommand. */
export function trainCommand(): Command {
  const cmd = new Command("train")
    .description(
      "pre-train a GPT on the embedded Brown corpus or --data: dense, static sparse or SSD schedule",
    )
    .option("--preset <name>", "start from a preset: default or tiny")
    .option("--config <file>", "JSON file of config keys (flags override it)")
    .option("--steps <n>", `optimizer steps (default ${D.steps})`, intArg)
    .option("--tokens <n>", "train for this many tokens instead of --steps", intArg)
    .option("--batch-size <n>", `sequences per step (default ${D.batch_size})`, intArg);
  return scheduleOptions(optimizerOptions(modelOptions(cmd)), DEFAULT_SCHEDULE_CONFIG)
    .option(
      "--eval-every <n>",
      `validation every N steps, 0 = only at the end (default ${D.eval_every})`,
      intArg,
    )
    .option(
      "--eval-tokens <n>",
      `validation tokens per evaluation during training (default ${D.eval_tokens})`,
      intArg,
    )
    .option(
      "--eval-batch <n>",
      `windows per forward when evaluating (default ${D.eval_batch})`,
      intArg,
    )
    .option("--val-tokens <n>", "validation tokens of the final evaluation (default: all)", intArg)
    .option(
      "--save-every <n>",
      `checkpoint every N steps, 0 = only the final one (default ${D.save_every})`,
      intArg,
    )
    .option("--seed <n>", `seed of init and data order (default ${D.seed})`, intArg)
    .option("--out <dir>", `output folder (default ${D.out})`)
    .option("--data <path>", "text file or folder of .txt files instead of the Brown corpus")
    .option("--val <path>", "validation text (default: the last 5% of --data)")
    .addOption(
      new Option(
        "--schedule <kind>",
        `dense, sparse (static MoE from --sparse-from) or ssd (default ${D.schedule})`,
      )
        .choices(["dense", "sparse", "ssd"]),
    )
    .option("--sparse-from <n>", "--schedule sparse: step of the switch (default 10%)", intArg)
    .option(
      "--fresh-margin <x>",
      `k-means fresh start must beat warm by this share (default ${D.fresh_margin})`,
      numArg,
    )
    .option("--resume <path>", "continue from a checkpoint file or run folder (see below)")
    .option("--force", "a new run replaces another run's checkpoints and metrics in --out")
    .option("--profile", "time kernel families with GPU timestamps over a few steps")
    .option("--json", "print the summary as one JSON document")
    .addHelpText("after", "\nResume:\n" + wrap(RESUME_RULE, 78, "  "))
    .action(async (flags: TrainFlags) => {
      const { config: configFile, resume, force, profile, json, ...rest } = flags;
      const given = snakeKeys(rest);
      // commander sets bias=true when --no-bias is absent: keep only a real --no-bias.
      if (given.bias === true) delete given.bias;
      const config: TrainConfig = resume
        ? (await resolveResume(resume, given, configFile)).config
        : await resolveTrainConfig(given, configFile);
      const run = await trainWithProgress(config, { resume: resume ?? null, force, profile, json });
      if (run.signal) Deno.exit(SIGNAL_EXIT[run.signal]);
    });
}

/** Breaks `text` into lines of at most `width` columns, each starting with `indent`. */
function wrap(text: string, width: number, indent: string): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && indent.length + line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  return [...lines, indent + line].join("\n");
}

async function trainWithProgress(
  config: TrainConfig,
  opts: { resume: string | null; force?: boolean; profile?: boolean; json?: boolean },
): Promise<{ summary: TrainSummary; signal: keyof typeof SIGNAL_EXIT | null }> {
  const progress = new Progress({ quiet: opts.json });
  const controller = new AbortController();
  let signal: keyof typeof SIGNAL_EXIT | null = null;
  // Windows delivers only SIGINT (and SIGBREAK) to Deno.
  const signals = (Object.keys(SIGNAL_EXIT) as (keyof typeof SIGNAL_EXIT)[])
    .filter((s) => s === "SIGINT" || Deno.build.os !== "windows");
  const listeners = signals.map((s) => {
    const onSignal = () => {
      if (signal) return;
      signal = s;
      progress.warn(
        `ssd: ${s}: stopping after the current step or evaluation, saving a checkpoint`,
      );
      controller.abort();
    };
    Deno.addSignalListener(s, onSignal);
    return () => Deno.removeSignalListener(s, onSignal);
  });
  let summary: TrainSummary;
  try {
    summary = await runTrain(config, {
      resume: opts.resume,
      force: opts.force,
      profile: opts.profile,
      signal: controller.signal,
      hooks: trainHooks(progress),
    });
  } finally {
    progress.finish();
    for (const remove of listeners) remove();
  }
  if (opts.json) console.log(JSON.stringify(summary, null, 2));
  else console.log(formatSummary(summary));
  return { summary, signal: summary.interrupted ? signal : null };
}

/** Human-readable summary of a run. */
export function formatSummary(s: TrainSummary): string {
  if (s.complete) {
    return `run ${s.config.out} is complete at step ${s.step}: nothing to do ` +
      `(give --steps above ${s.step} to train it further)`;
  }
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
  if (s.interrupted) {
    lines.push(
      s.checkpoints.length > 0 || s.resumed_from
        ? `interrupted: resume with --resume ${s.config.out}`
        : "interrupted before the first step: nothing was saved",
    );
  }
  return lines.join("\n");
}
