/**
 * Flags and progress output shared by `ssd train` and `ssd demo` (whose
 * defaults differ): the schedule's options and the training progress fields.
 */
import type { Command } from "commander";
import type { StepMetrics } from "../pipelines/train/metrics.ts";
import type { TrainHooks } from "../pipelines/train/run.ts";
import { ENDINGS, type ScheduleConfig } from "../pipelines/train/schedule.ts";
import { SWITCH_RULES } from "../pipelines/train/switch_rule.ts";
import { intArg, numArg } from "./_flags.ts";
import type { Progress } from "./_progress.ts";

/**
 * Adds the SSD schedule's flags with `d`'s values in their help:
 * shared by `ssd train` and `ssd demo`, whose defaults differ.
 */
export function scheduleOptions(cmd: Command, d: ScheduleConfig): Command {
  return cmd
    .option(
      "--experts <E>",
      `experts per FFN layer in sparse phases (default ${d.experts})`,
      intArg,
    )
    .option("--top-k <k>", "experts per token in sparse phases (default E/4)", intArg)
    .option(
      "--switch-rule <rule>",
      `when the structure counts as stable: ${SWITCH_RULES.join(", ")} (default ${d.switch_rule})`,
    )
    .option(
      "--monitor-every <n>",
      `steps between monitor checks, dense and sparse (default ${d.monitor_every})`,
      intArg,
    )
    .option(
      "--stable-threshold <x>",
      `threshold rule: partition ARI that counts as stable (default ${d.stable_threshold})`,
      numArg,
    )
    .option(
      "--plateau-tolerance <x>",
      `plateau rule: a rise of the ARI between checks below this is stable (default ${d.plateau_tolerance})`,
      numArg,
    )
    .option(
      "--overlap-threshold <x>",
      `overlap rule: oracle top-k overlap that counts as stable (default ${d.overlap_threshold})`,
      numArg,
    )
    .option(
      "--coverage-threshold <x>",
      `coverage rule: router coverage at top-k that counts as stable (default ${d.coverage_threshold})`,
      numArg,
    )
    .option(
      "--guard-tolerance <x>",
      `guard rule: relative MoE loss gap on the probe that counts as stable, and that ends a sparse phase when exceeded (default ${d.guard_tolerance})`,
      numArg,
    )
    .option(
      "--drift-threshold <x>",
      `a sparse phase ends early when its partition's ARI with the structure now falls below this (default ${d.drift_threshold})`,
      numArg,
    )
    .option(
      "--patience <n>",
      `stable checks in a row that switch to sparse (default ${d.patience})`,
      intArg,
    )
    .option("--sparse-steps <n>", `longest sparse phase (default ${d.sparse_steps})`, intArg)
    .option(
      "--dense-every <n>",
      `in a sparse phase every n-th step runs dense, 0 for none (default ${d.dense_every})`,
      intArg,
    )
    .option(
      "--ending <how>",
      `how the run ends: ${ENDINGS.join(", ")} (default ${d.ending})`,
    )
    .option(
      "--final-dense <n>",
      "steps of the run's ending (default 10% of the run)",
      intArg,
    )
    .option(
      "--probe-tokens <n>",
      `held-out tokens of the monitor's probe readings (default ${d.probe_tokens})`,
      intArg,
    );
}

/**
 * Training progress on `progress`: step/total, loss, the latest validation
 * loss, tok/s and ms/step (a line too wide loses ms/step first, then tok/s,
 * ...), and the pipeline's log lines. Shared by `ssd train` and `ssd demo`.
 */
export function trainHooks(progress: Progress): TrainHooks {
  let val = "";
  return {
    onStep: (m: StepMetrics, total: number) =>
      progress.update(m.step, total, [
        `step ${m.step}/${total}`,
        `loss ${m.loss.toFixed(4)}`,
        val,
        `${Math.round(m.tokens_per_s)} tok/s`,
        `${m.ms_per_step.toFixed(0)} ms/step`,
      ]),
    onEval: (_step, r) => (val = `val ${r.nll.toFixed(4)}`),
    log: (line) => progress.log(line),
  };
}
