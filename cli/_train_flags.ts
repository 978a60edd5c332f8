/**
 * Flags and progress output shared by `ssd train` and `ssd demo` (whose
 * defaults differ): the schedule's options and the training progress line.
 */
import type { Command } from "commander";
import type { StepMetrics } from "../pipelines/train/metrics.ts";
import type { TrainHooks } from "../pipelines/train/run.ts";
import { ENDINGS, type ScheduleConfig } from "../pipelines/train/schedule.ts";
import { SWITCH_RULES } from "../pipelines/train/switch_rule.ts";
import { intArg, numArg } from "./_flags.ts";

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

/** Seconds as "4m05s", or "12.3s" under a minute. */
export function fmtDuration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s` : `${s.toFixed(1)}s`;
}

/**
 * Progress on stderr for a training run of `steps` steps: a redrawn bar on a
 * terminal, else a line at the first step, every 5% and at least every 15 s.
 * Shared by `ssd train` and `ssd demo`.
 */
export function progressHooks(steps: number): TrainHooks & { err(s: string): void; tty: boolean } {
  const enc = new TextEncoder();
  const err = (s: string) => Deno.stderr.writeSync(enc.encode(s));
  const tty = Deno.stderr.isTerminal();
  const every = Math.max(1, Math.floor(steps / 20));
  let lastDraw = 0;
  let lastVal = "";
  const t0 = performance.now();
  let firstStep = -1;
  const onStep = (m: StepMetrics, total: number) => {
    if (firstStep < 0) firstStep = m.step - 1;
    const elapsed = (performance.now() - t0) / 1000;
    const done = m.step - firstStep;
    const eta = (elapsed / done) * (total - m.step);
    const line = `step ${m.step}/${total} | loss ${m.loss.toFixed(4)}${lastVal} | ` +
      `${Math.round(m.tokens_per_s)} tok/s | ${m.ms_per_step.toFixed(0)} ms/step | ` +
      `ETA ${fmtDuration(eta)}`;
    const now = performance.now();
    if (tty) {
      if (now - lastDraw > 100 || m.step === total) {
        const bar = "#".repeat(Math.round((20 * m.step) / total)).padEnd(20, ".");
        err(`\r\x1b[K[${bar}] ${line}`);
        lastDraw = now;
      }
    } else if (
      m.step === firstStep + 1 || m.step % every === 0 || m.step === total ||
      now - lastDraw > 15000
    ) {
      err(line + "\n");
      lastDraw = now;
    }
  };
  return {
    err,
    tty,
    onStep,
    onEval: (_step, r) => (lastVal = ` | val ${r.nll.toFixed(4)}`),
    log: (l) => err((tty ? "\r\x1b[K" : "") + l + "\n"),
  };
}
