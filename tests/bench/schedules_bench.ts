/**
 * `deno task bench:schedules`: trains the same config and seed with several
 * schedules on the embedded corpus and compares each run with the dense
 * one: final validation loss dense-mode and MoE-mode (at the trained
 * top-k), wall time, FFN FLOPs, sparse share and switches. Any `--key value`
 * pair other than the options below is a train flag applied to every run
 * (e.g. `--steps 2000`, `--data FILE`).
 *
 * Default (three runs): `--schedule dense`, `sparse` (the static baseline:
 * MoE-fied once at `--sparse-from`) and `ssd` with the schedule's own
 * defaults, printed as one table; `--json` prints one JSON document
 * instead. The runs are the demo's length (1500 steps), final loss on the
 * first 65,536 validation bytes: about 15 minutes on the 2-core llvmpipe
 * machine.
 *
 * `--grid`: the schedule sweep ("the frontier"): dense, the static baseline
 * and every SSD schedule of `SCHEDULE_GRID` (pipelines/bench/schedule_grid.ts),
 * each a set of train-config overrides over the demo's length (1500 steps,
 * 65,536 validation bytes) and otherwise the defaults, so that the grid's
 * `defaults` entry is `ssd train --schedule ssd` itself. `--only a,b` trains
 * only the named runs (dense always, as the reference); `--out FILE` is
 * where the JSON document goes (default `runs/schedules/grid.json`),
 * rewritten after every run so that a partial sweep is usable
 * (`"complete": false`). `ssd report --schedules FILE` draws it. A full
 * sweep is hours on the 2-core llvmpipe machine (one run of 1500 steps
 * about 7 minutes).
 *
 * Runs train in folders under one temporary folder, removed at the end;
 * Ctrl-C stops the current run and keeps the document of the runs before it.
 */
import { dirname, join } from "node:path";
import denoJson from "../../deno.json" with { type: "json" };
import { writeFileAtomic } from "../../core/atomic_write.ts";
import { ConfigError, SsdError } from "../../core/errors.ts";
import { initGpu } from "../../gpu/runtime.ts";
import {
  DENSE_ENTRY,
  gridDocument,
  type GridEntry,
  runFlags,
  type ScheduleGridDoc,
  type ScheduleRow,
  scheduleRows,
  selectRuns,
  SPARSE_ENTRY,
} from "../../pipelines/bench/schedule_grid.ts";
import { DEMO_TRAIN_OVERRIDES } from "../../pipelines/demo.ts";
import { resolveTrainConfig, type TrainConfig } from "../../pipelines/train/config.ts";
import { runTrain, type TrainSummary } from "../../pipelines/train/run.ts";

const DEFAULT_GRID_OUT = "runs/schedules/grid.json";
/** The three-run mode's SSD run: the shared (demo) flags and nothing of its own. */
const SSD_ENTRY: GridEntry = { name: "ssd", overrides: {} };

/** What the command line asks for. */
interface BenchArgs {
  json: boolean;
  grid: boolean;
  only: string[] | null;
  out: string | null;
  /** Train flags given on the command line (snake_case). */
  train: Record<string, unknown>;
}

function parseArgs(argv: readonly string[]): BenchArgs {
  const a: BenchArgs = { json: false, grid: false, only: null, out: null, train: {} };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === "--json") a.json = true;
    else if (flag === "--grid") a.grid = true;
    else if (!flag.startsWith("--")) throw new ConfigError(`Unexpected argument "${flag}"`);
    else {
      const v = argv[++i];
      if (v === undefined) throw new ConfigError(`${flag} needs a value`);
      if (flag === "--only") a.only = v.split(",").map((s) => s.trim()).filter((s) => s !== "");
      else if (flag === "--out") a.out = v;
      else a.train[flag.slice(2).replaceAll("-", "_")] = isNaN(Number(v)) ? v : Number(v);
    }
  }
  if (!a.grid && (a.only !== null || a.out !== null)) {
    throw new ConfigError("--only and --out belong to --grid");
  }
  if ("schedule" in a.train) {
    throw new ConfigError("--schedule is set per run here: leave it out");
  }
  return a;
}

/** `deno run ...` with the arguments, quoted where the shell would need it. */
function commandLine(argv: readonly string[]): string {
  const quote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`);
  return ["deno run -A tests/bench/schedules_bench.ts", ...argv.map(quote)].join(" ");
}

/**
 * Trains each entry in order, calling `onRun` after each; stops early on
 * Ctrl-C. Every config is resolved before the first step, so a bad flag or
 * grid entry fails at once rather than hours in.
 */
async function trainAll(
  entries: readonly GridEntry[],
  shared: Record<string, unknown>,
  onRun: (done: { entry: GridEntry; run: TrainSummary }[]) => Promise<void>,
): Promise<{ entry: GridEntry; run: TrainSummary }[]> {
  const tmp = await Deno.makeTempDir({ prefix: "ssd-schedules-" });
  const controller = new AbortController();
  const onSignal = () => {
    console.error("\nbench:schedules: SIGINT: stopping the current run");
    controller.abort();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  const done: { entry: GridEntry; run: TrainSummary }[] = [];
  try {
    const configs: TrainConfig[] = [];
    for (const [i, entry] of entries.entries()) {
      const out = join(tmp, `${String(i).padStart(2, "0")}-${entry.name}`);
      configs.push(await resolveTrainConfig({ ...runFlags(entry, shared), out }));
    }
    for (const [i, entry] of entries.entries()) {
      const config = configs[i];
      const set = Object.entries(entry.overrides).map(([k, v]) => `${k}=${v}`).join(" ");
      console.error(
        `bench:schedules: ${i + 1}/${entries.length} ${entry.name} (${set || "no overrides"}, ` +
          `${config.steps} steps)`,
      );
      const t0 = performance.now();
      const run = await runTrain(config, {
        signal: controller.signal,
        hooks: { log: (l) => l.startsWith("step ") && console.error(`  ${l}`) },
      });
      if (run.interrupted) break;
      console.error(`  done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
      done.push({ entry, run });
      await onRun(done);
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    await Deno.remove(tmp, { recursive: true });
  }
  return done;
}

function signed(v: number): string {
  return `${v >= 0 ? "+" : ""}${v.toFixed(2)}%`;
}

/** The comparison table: one line per run, bits/byte with the gap in nats. */
function printTable(config: TrainConfig, rows: readonly ScheduleRow[]): void {
  const c = config;
  console.log(
    `config: d_model ${c.d_model}, ${c.n_layer} layers, d_ff ${c.d_ff}, ctx ${c.ctx}, batch ` +
      `${c.batch_size}, ${c.steps} steps, E ${c.experts}, top-k ${
        c.top_k ?? c.experts / 4
      }, seed ${c.seed}`,
  );
  const w = Math.max(9, ...rows.map((r) => r.name.length + 1));
  console.log(
    `${"schedule".padEnd(w)} val bpb  (gap)    MoE bpb  (gap)     wall s  (x dense)  ` +
      "FFN GFLOP (x dense)  sparse share  switches",
  );
  for (const r of rows) {
    const moe = r.val_bpb_moe === null
      ? "-".padEnd(17)
      : `${r.val_bpb_moe.toFixed(4)} (${signed(r.moe_gap_pct!)})`.padEnd(17);
    console.log(
      `${r.name.padEnd(w)} ${r.val_bpb.toFixed(4)} (${signed(r.dense_gap_pct)})  ${moe}  ${
        r.wall_s.toFixed(0).padStart(6)
      }  (${r.wall_vs_dense.toFixed(2)})     ${(r.ffn_flops / 1e9).toFixed(0).padStart(6)} (${
        r.ffn_flops_vs_dense.toFixed(2)
      })        ${(100 * r.sparse_share).toFixed(0).padStart(3)}%        ${r.switches}`,
    );
  }
}

/** The three-run comparison with the demo's schedule settings. */
async function threeRuns(a: BenchArgs): Promise<void> {
  const { steps, val_tokens } = DEMO_TRAIN_OVERRIDES;
  const shared = {
    steps,
    val_tokens,
    eval_every: 0,
    save_every: 0,
    ...a.train,
  };
  const entries = [DENSE_ENTRY, SPARSE_ENTRY, SSD_ENTRY];
  const done = await trainAll(entries, shared, async () => {});
  if (done.length < entries.length) throw new SsdError("Interrupted: no comparison");
  const rows = scheduleRows(done);
  const dense = done[0].run;
  if (a.json) {
    const runs = Object.fromEntries(done.map((d) => [d.entry.name, d.run]));
    console.log(JSON.stringify({ config: dense.config, rows, runs }, null, 2));
  } else {
    printTable(dense.config, rows);
  }
}

/** The sweep: trains the grid and rewrites the document after every run. */
async function gridSweep(a: BenchArgs): Promise<void> {
  const out = a.out ?? DEFAULT_GRID_OUT;
  const entries = selectRuns(a.only);
  // The demo's length, the defaults otherwise: the `defaults` entry is then plain ssd train.
  const { steps, val_tokens } = DEMO_TRAIN_OVERRIDES;
  const shared = { steps, val_tokens, eval_every: 0, save_every: 0, ...a.train };
  try {
    await Deno.mkdir(dirname(out) || ".", { recursive: true });
  } catch (e) {
    throw new ConfigError(`Cannot create the folder of ${out}: ${(e as Error).message}`);
  }
  const date = new Date().toISOString();
  const adapter = (await initGpu()).dev.summary.name;
  // Set in the callback, after each run: a holder, since the closure's writes escape narrowing.
  const last: { doc: ScheduleGridDoc | null } = { doc: null };
  const done = await trainAll(entries, shared, async (runs) => {
    const doc = last.doc = gridDocument({
      ssd_version: denoJson.version,
      command: commandLine(Deno.args),
      date,
      adapter,
      complete: runs.length === entries.length,
      config: { ...runs[0].run.config },
      rows: scheduleRows(runs),
    });
    try {
      await writeFileAtomic(out, JSON.stringify(doc, null, 2) + "\n");
    } catch (e) {
      throw new ConfigError(`Cannot write ${out}: ${(e as Error).message.split("\n")[0]}`);
    }
    console.error(`  wrote ${out} (${runs.length}/${entries.length} runs)`);
  });
  if (last.doc === null) {
    throw new SsdError("Interrupted before the dense run finished: nothing written");
  }
  if (a.json) console.log(JSON.stringify(last.doc, null, 2));
  else printTable(done[0].run.config, scheduleRows(done));
  if (done.length < entries.length) {
    console.error(`bench:schedules: interrupted: ${out} holds ${done.length} of the runs`);
    Deno.exitCode = 130;
  }
}

try {
  const a = parseArgs(Deno.args);
  await (a.grid ? gridSweep(a) : threeRuns(a));
} catch (e) {
  if (!(e instanceof SsdError)) throw e;
  console.error(`bench:schedules: ${e.message}`);
  Deno.exit(1);
}
