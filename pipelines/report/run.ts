/**
 * `ssd report`: one self-contained HTML page with plots of one or more
 * training runs (and, optionally, `ssd bench --json` files and a schedule
 * sweep of `bench:schedules --grid`), for comparing dense, static sparse
 * and SSD runs at a glance.
 *
 * Every input is read and checked first (`data.ts`,
 * `bench.ts`, `schedules.ts`); the plots are vega-lite specs (`charts.ts`,
 * `bench_charts.ts`, `schedule_charts.ts`) compiled to vega and rendered to SVG strings in
 * this process (a headless vega View: no browser, no canvas), then placed
 * inline in the page (`html.ts`). Files are written only once everything rendered, each
 * through a temporary file and a rename, so bad input leaves no file behind
 * and a crash never leaves half a page.
 */
import { writeFileAtomic } from "../../core/atomic_write.ts";
import { dirname, join } from "node:path";
import denoJson from "../../deno.json" with { type: "json" };
import { ConfigError } from "../../core/errors.ts";
import { type BenchData, labelBenches, readBench } from "./bench.ts";
import type { PlotSpec, SkippedPlot } from "./_style.ts";
import { benchLossPlot, benchSpeedPlot } from "./bench_charts.ts";
import { activationPlot, flopsPlot, lossPlot, similarityPlot, throughputPlot } from "./charts.ts";
import { labelRuns, METRICS_FILE, readRun, type RunData, summarizeRun } from "./data.ts";
import { type PlotSection, type RenderedPlot, reportHtml } from "./html.ts";
import { readScheduleGrid, type ScheduleGridData } from "./schedules.ts";
import { scheduleFlopsPlot, scheduleWallPlot } from "./schedule_charts.ts";

/** What `ssd report` reads and writes. */
export interface ReportConfig {
  /** Run folders written by `ssd train --out`, overlaid in this order (may be empty with `schedules`). */
  runs: string[];
  /** The HTML file to write (its folder is created). */
  out: string;
  /** Also write each plot as `<svg_dir>/<id>.svg`; null: don't. */
  svg_dir: string | null;
  /** `ssd bench --json` files whose rows are plotted per k. */
  bench: string[];
  /** A schedule sweep document (`bench:schedules --grid`) to plot; null or missing: none. */
  schedules?: string | null;
}

/** Defaults of `ReportConfig` fields the CLI may leave out. */
export const DEFAULT_REPORT_CONFIG: Readonly<Pick<ReportConfig, "out" | "svg_dir" | "bench">> =
  Object.freeze({ out: "report.html", svg_dir: null, bench: [] });

/** What `runReport` wrote. */
export interface ReportResult {
  /** The HTML file. */
  out: string;
  /** Its size in bytes. */
  bytes: number;
  /** Ids of the plots on the page, in order. */
  plots: string[];
  /** Plots left out and why. */
  skipped: SkippedPlot[];
  /** SVG files written with `svg_dir`. */
  svg: string[];
  /** Runs with their labels and final numbers. */
  runs: {
    dir: string;
    label: string;
    schedule: string;
    steps: number;
    val_loss: number | null;
    val_loss_moe: number | null;
  }[];
  /** Bench files plotted. */
  bench: string[];
  /** The schedule sweep plotted, null when none. */
  schedules: string | null;
  /** Time to read, render and write, ms. */
  ms: number;
  /** Warnings of the vega-lite compiler (none expected: each would be a bug in a spec). */
  warnings: string[];
  /** One line per run whose metrics end in an incomplete line (left out of the plots). */
  notes: string[];
}

let vegaModules:
  | Promise<{ vega: typeof import("vega"); vegaLite: typeof import("vega-lite") }>
  | null = null;

/**
 * Loads vega and vega-lite on first use: they are slow to import, which
 * every other subcommand (all registered in one CLI) would otherwise pay.
 */
function loadVega() {
  vegaModules ??= Promise.all([import("vega"), import("vega-lite")]).then(([vega, vegaLite]) => ({
    vega,
    vegaLite,
  }));
  return vegaModules;
}

/** Compiles a vega-lite spec and renders it to an `<svg>` string, headless. */
export async function renderSvg(spec: PlotSpec["spec"], warnings: string[] = []): Promise<string> {
  const logger = {
    level(_?: number) {
      return logger;
    },
    error: (...a: unknown[]) => {
      throw new Error(`vega-lite: ${a.join(" ")}`);
    },
    warn: (...a: unknown[]) => (warnings.push(a.join(" ")), logger),
    info: () => logger,
    debug: () => logger,
  };
  const { vega, vegaLite } = await loadVega();
  // deno-lint-ignore no-explicit-any -- the logger's fluent return type is internal to vega-lite
  const vg = vegaLite.compile(spec, { logger: logger as any }).spec;
  const view = new vega.View(vega.parse(vg), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Writes `text` atomically; an I/O failure becomes one line naming the file. */
async function writeAtomic(path: string, text: string): Promise<void> {
  try {
    await writeFileAtomic(path, text);
  } catch (e) {
    throw new ConfigError(`Cannot write ${path}: ${(e as Error).message.split("\n")[0]}`);
  }
}

/** Creates a folder (and its parents) for output, with a one-line error naming it. */
async function ensureDir(dir: string): Promise<void> {
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (e) {
    throw new ConfigError(`Cannot create folder ${dir}: ${(e as Error).message.split("\n")[0]}`);
  }
}

function isSkipped(p: PlotSpec | SkippedPlot): p is SkippedPlot {
  return "reason" in p;
}

/**
 * The plot specs of the page, in order: training plots with runs, bench
 * plots with bench files, the sweep's plots with a sweep.
 */
export function reportPlots(
  runs: readonly RunData[],
  benches: readonly BenchData[],
  grid: ScheduleGridData | null = null,
): { plots: (PlotSpec & { section: PlotSection })[]; skipped: SkippedPlot[] } {
  const all = runs.length === 0 ? [] : [
    lossPlot(runs),
    activationPlot(runs),
    similarityPlot(runs),
    throughputPlot(runs),
    flopsPlot(runs),
  ];
  const plots = all.filter((p): p is PlotSpec => !isSkipped(p)).map((p) => ({
    ...p,
    section: "training" as PlotSection,
  }));
  if (benches.length > 0) {
    for (const p of [benchSpeedPlot(benches), benchLossPlot(benches)]) {
      plots.push({ ...p, section: "bench" });
    }
  }
  if (grid !== null) {
    for (const p of [scheduleFlopsPlot(grid), scheduleWallPlot(grid)]) {
      plots.push({ ...p, section: "schedules" });
    }
  }
  return { plots, skipped: all.filter(isSkipped) };
}

/**
 * Reads the runs (and bench files), renders the plots and writes the page
 * (and, with `svg_dir`, one SVG per plot).
 *
 * @throws ConfigError naming the file (and line) of the first bad input, or an unwritable output
 * @throws CheckpointError when a run's checkpoint is corrupt
 */
export async function runReport(config: ReportConfig): Promise<ReportResult> {
  const t0 = performance.now();
  const gridFile = config.schedules ?? null;
  if (config.runs.length === 0 && gridFile === null) {
    throw new ConfigError(
      "No run folder given: name at least one folder written by ssd train, or --schedules FILE",
    );
  }
  const runs: RunData[] = [];
  for (const dir of config.runs) runs.push(await readRun(dir));
  labelRuns(runs);
  const benches: BenchData[] = [];
  for (const file of config.bench) benches.push(await readBench(file));
  labelBenches(benches);
  const grid = gridFile === null ? null : await readScheduleGrid(gridFile);

  const { plots, skipped } = reportPlots(runs, benches, grid);
  const warnings: string[] = [];
  const rendered: RenderedPlot[] = [];
  for (const p of plots) {
    rendered.push({ ...p, svg: await renderSvg(p.spec, warnings) });
  }
  const summaries = runs.map((run) => ({ run, summary: summarizeRun(run) }));
  const html = reportHtml({
    runs: summaries,
    benches,
    grid,
    plots: rendered,
    skipped,
    version: denoJson.version,
  });

  const svg: string[] = [];
  if (config.svg_dir !== null) {
    await ensureDir(config.svg_dir);
    for (const p of rendered) {
      const path = join(config.svg_dir, `${p.id}.svg`);
      await writeAtomic(path, `<?xml version="1.0" encoding="UTF-8"?>\n${p.svg}\n`);
      svg.push(path);
    }
  }
  await ensureDir(dirname(config.out) || ".");
  await writeAtomic(config.out, html);
  return {
    out: config.out,
    bytes: new TextEncoder().encode(html).length,
    plots: rendered.map((p) => p.id),
    skipped,
    svg,
    runs: summaries.map(({ run, summary }) => ({
      dir: run.dir,
      label: run.label,
      schedule: run.schedule,
      steps: summary.steps,
      val_loss: summary.val_loss,
      val_loss_moe: summary.val_loss_moe,
    })),
    bench: benches.map((b) => b.file),
    schedules: gridFile,
    ms: performance.now() - t0,
    warnings,
    notes: runs.filter((r) => r.partial_line !== undefined).map((r) =>
      `${join(r.dir, METRICS_FILE)} line ${r.partial_line} is incomplete (a live or killed run): ` +
      `drew the ${r.partial_line! - 1} complete lines`
    ),
  };
}
