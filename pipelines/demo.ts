/**
 * `deno task demo` (`ssd demo`): the main job end to end on the embedded
 * corpus, each stage the real subcommand's pipeline:
 *
 *   1. train    SSD schedule (`runTrain`), checkpoints every save_every steps
 *   2. profile  activation ratios and pattern similarity across those
 *               checkpoints (`runProfile`, arrays under <out>/profile)
 *   3. bench    the final model dense vs MoE at several k: prefill, KV-cache
 *               decode at batch 1 and 8, loss (`runBench`, <out>/bench.json)
 *   4. report   <out>/report.html with every plot (`runReport`)
 *
 * The default config is the default model trained for 1500 steps, sized to
 * finish in minutes on a software adapter. Two schedule settings differ
 * from `ssd train`'s defaults so that the run shows a sparse phase within
 * that budget: a lower stability threshold (0.85; the default model's
 * partition ARI reaches 0.9 only late in a run) and a 400-step sparse phase. Every field can be
 * overridden with `ssd train`'s flags of the same name (`--preset tiny`
 * for a quick check); the data is always the embedded Brown corpus.
 */
import { ConfigError } from "../core/errors.ts";
import { join } from "node:path";
import { writeFileAtomic } from "../core/atomic_write.ts";
import { benchJson, type BenchReport, DEFAULT_BENCH_CONFIG, runBench } from "./bench/run.ts";
import { DEFAULT_PROFILE_CONFIG, type ProfileReport, runProfile } from "./profile/run.ts";
import { type ReportResult, runReport } from "./report/run.ts";
import { resolveTrainConfig, type TrainConfig } from "./train/config.ts";
import { METRICS_FILE } from "./train/metrics.ts";
import { runTrain, type TrainHooks, type TrainSummary } from "./train/run.ts";
import { earlierRunFiles, FINAL_CHECKPOINT } from "./train/run_folder.ts";

/** What the demo sets on top of the train defaults (flags override each). */
export const DEMO_TRAIN_OVERRIDES: Readonly<Partial<TrainConfig>> = Object.freeze({
  schedule: "ssd",
  steps: 1500,
  save_every: 300,
  eval_every: 250,
  val_tokens: 65536,
  out: "runs/demo",
});

/** Options of `runDemo`. */
export interface DemoOptions {
  /** Train config keys (snake_case, as `ssd train`'s flags) over `DEMO_TRAIN_OVERRIDES`. */
  train: Record<string, unknown>;
  /** Decode batches of the bench besides 1. */
  bench_batch?: number[];
  /** Validation tokens of the bench's loss at each k (default: the train config's val_tokens). */
  bench_tokens?: number;
  /** Progress lines (stage starts, files written). */
  log?: (line: string) => void;
  /** Per-step progress of the training stage. */
  trainHooks?: TrainHooks;
  /** Replace an earlier run in the folder (its checkpoints and metrics are removed first). */
  force?: boolean;
}

/** Where everything went, and the headline numbers. */
export interface DemoResult {
  /** Run folder. */
  out: string;
  /** The training run's summary. */
  train: TrainSummary;
  /** The profile of the run's checkpoints. */
  profile: ProfileReport;
  /** The bench of the final checkpoint. */
  bench: BenchReport;
  /** The report page. */
  report: ReportResult;
  /** Files written, by what they hold. */
  files: {
    metrics: string;
    checkpoints: string[];
    profile: string;
    bench: string;
    report: string;
  };
  /** Seconds per stage. */
  seconds: { train: number; profile: number; bench: number; report: number; total: number };
}

/** The demo writes a folder: an existing file of that name is refused before any work. */
function refuseFileAsFolder(out: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(out);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  if (!info.isDirectory) {
    throw new ConfigError(
      `--out ${out} is an existing file: give a folder for the demo's run (created if missing)`,
    );
  }
}

/** A folder holding an earlier run is refused before any work, unless `force`. */
async function refuseEarlierRun(out: string, force: boolean): Promise<void> {
  if (force) return;
  if ((await earlierRunFiles(out, METRICS_FILE)).length > 0) {
    throw new ConfigError(
      `--out ${out} holds an earlier run: --force to replace it, or --out another folder`,
    );
  }
}

/** Runs the four stages; see the module comment. */
export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const log = opts.log ?? (() => {});
  const config = await resolveTrainConfig({ ...DEMO_TRAIN_OVERRIDES, ...opts.train });
  const out = config.out;
  refuseFileAsFolder(out);
  await refuseEarlierRun(out, opts.force ?? false);
  const t0 = performance.now();
  const lap = (t: number) => (performance.now() - t) / 1000;

  log(`1/4 train: ${config.schedule} schedule, ${config.steps} steps -> ${out}`);
  let t = performance.now();
  const train = await runTrain(config, { force: opts.force, hooks: { ...opts.trainHooks, log } });
  const trainS = lap(t);
  const final = join(out, FINAL_CHECKPOINT);

  log(`2/4 profile: ${train.checkpoints.length} checkpoints`);
  t = performance.now();
  const profileDir = join(out, "profile");
  await Deno.mkdir(profileDir, { recursive: true });
  const profile = await runProfile({
    ...DEFAULT_PROFILE_CONFIG,
    checkpoints: train.checkpoints,
    data: config.data,
    experts: config.experts,
    out: profileDir,
  });
  await writeFileAtomic(join(profileDir, "profile.json"), JSON.stringify(profile, null, 2) + "\n");
  const profileS = lap(t);

  log(`3/4 bench: ${final}, dense vs MoE`);
  t = performance.now();
  const bench = await runBench({
    ...DEFAULT_BENCH_CONFIG,
    checkpoint: final,
    // A run that never switched has no experts yet: MoE-fy it in memory.
    experts: train.val_moe ? null : config.experts,
    batch: opts.bench_batch ?? DEFAULT_BENCH_CONFIG.batch,
    data: null,
    val_tokens: opts.bench_tokens ?? config.val_tokens ?? DEFAULT_BENCH_CONFIG.val_tokens,
  });
  const benchPath = join(out, "bench.json");
  await writeFileAtomic(benchPath, JSON.stringify(benchJson(bench), null, 2) + "\n");
  const benchS = lap(t);

  log("4/4 report");
  t = performance.now();
  const report = await runReport({
    runs: [out],
    out: join(out, "report.html"),
    svg_dir: null,
    bench: [benchPath],
  });
  const reportS = lap(t);

  return {
    out,
    train,
    profile,
    bench,
    report,
    files: {
      metrics: join(out, METRICS_FILE),
      checkpoints: train.checkpoints,
      profile: profileDir,
      bench: benchPath,
      report: report.out,
    },
    seconds: {
      train: trainS,
      profile: profileS,
      bench: benchS,
      report: reportS,
      total: lap(t0),
    },
  };
}
