/**
 * `ssd report [RUN_DIR...] [-o FILE] [--svg DIR] [--bench FILE.json ...]
 * [--schedules FILE.json]`: one self-contained HTML page with plots of
 * training runs (loss, activation ratio, pattern similarity, throughput,
 * FFN FLOPs), with `ssd bench --json` files speed and loss per k, and with
 * a `bench:schedules --grid` document the loss-vs-cost Pareto plots of its
 * schedules. Prints where it went, or with `--json` one JSON document.
 */
import { Command } from "commander";
import { DEFAULT_REPORT_CONFIG, type ReportResult, runReport } from "../pipelines/report/run.ts";

/** Options of `ssd report`, as commander parses them. */
export interface ReportFlags {
  /** The HTML file to write. */
  out: string;
  /** Folder for one SVG per plot. */
  svg?: string;
  /** `ssd bench --json` files. */
  bench?: string[];
  /** A `bench:schedules --grid` document. */
  schedules?: string;
  /** Print one JSON document. */
  json?: boolean;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Builds the `report` subcommand. */
export function reportCommand(): Command {
  return new Command("report")
    .description(
      "write one self-contained HTML page (inline SVG plots, no script, no network) comparing " +
        "training runs: loss and validation loss, activation ratio per layer, pattern " +
        "similarity with the switch threshold, tokens/s and FFN FLOPs vs step, sparse phases " +
        "shaded; with --bench, inference speed and loss per top-k; with --schedules, a schedule " +
        "sweep's loss gap against FFN FLOPs and wall time, with its Pareto frontiers",
    )
    .argument(
      "[run_dirs...]",
      "folders written by ssd train --out (each with metrics.jsonl); optional with --schedules",
    )
    .option("-o, --out <file>", "the HTML file to write", DEFAULT_REPORT_CONFIG.out)
    .option("--svg <dir>", "also write each plot as <dir>/<plot>.svg")
    .option(
      "--bench <file>",
      "an ssd bench --json output to plot per k (repeat for several checkpoints)",
      collect,
    )
    .option(
      "--schedules <file>",
      "a schedule sweep written by deno task bench:schedules --grid (its --out JSON)",
    )
    .option("--json", "print one JSON document (file written, plots, runs) on stdout")
    .action(async (runDirs: string[], flags: ReportFlags, cmd: Command) => {
      // The run folders are optional only with a sweep: without one, a usage error as before.
      if (runDirs.length === 0 && flags.schedules === undefined) {
        cmd.error("error: missing required argument 'run_dirs' (or give --schedules FILE)", {
          exitCode: 2,
          code: "commander.missingArgument",
        });
      }
      const result = await runReport({
        runs: runDirs,
        out: flags.out,
        svg_dir: flags.svg ?? null,
        bench: flags.bench ?? [],
        schedules: flags.schedules ?? null,
      });
      // Notes go to stderr, so that --json stays one document on stdout.
      for (const note of result.notes) console.error(`ssd report: ${note}`);
      console.log(flags.json ? JSON.stringify(reportJson(result)) : formatReport(result));
    });
}

/** The `--json` document. */
export function reportJson(r: ReportResult): Record<string, unknown> {
  return {
    out: r.out,
    bytes: r.bytes,
    plots: r.plots,
    skipped: r.skipped,
    svg: r.svg,
    runs: r.runs,
    bench: r.bench,
    schedules: r.schedules,
    ms: Math.round(r.ms),
  };
}

/** The human-readable lines of `ssd report`. */
export function formatReport(r: ReportResult): string {
  const kb = (r.bytes / 1024).toFixed(0);
  const inputs = [
    r.runs.length || !r.schedules ? `${r.runs.length} run${r.runs.length === 1 ? "" : "s"}` : "",
    r.bench.length ? `${r.bench.length} bench file${r.bench.length === 1 ? "" : "s"}` : "",
    r.schedules ? `schedule sweep ${r.schedules}` : "",
  ].filter((s) => s !== "");
  const lines = [`wrote ${r.out} (${kb} KiB, ${r.plots.length} plots, ${inputs.join(", ")})`];
  for (const run of r.runs) {
    const val = run.val_loss === null ? "unfinished" : `val loss ${run.val_loss.toFixed(4)}`;
    lines.push(`  ${run.label}: ${run.steps} steps, ${val}`);
  }
  for (const s of r.skipped) lines.push(`  no ${s.id} plot: ${s.reason}`);
  if (r.svg.length > 0) lines.push(`plots as SVG: ${r.svg.join(", ")}`);
  return lines.join("\n");
}
