/**
 * The page of `ssd report`: one self-contained HTML file (inline CSS and
 * inline SVG, no script, no external resource; a Content-Security-Policy
 * forbids any load, so a page that tried would show console errors). It
 * holds a summary table per run, the training plots, with bench files a
 * table and the plots per k, and with a schedule sweep its Pareto plots
 * and a table of its runs.
 */
import type { BenchData } from "./bench.ts";
import { PALETTE } from "./_style.ts";
import type { RunData, RunSummary } from "./data.ts";
import type { ScheduleGridData } from "./schedules.ts";
import { gridColors, sharedTopK } from "./schedule_charts.ts";
import { flagOf } from "../config.ts";

/** The part of the page a plot goes in. */
export type PlotSection = "training" | "bench" | "schedules";

/** A plot rendered to SVG. */
export interface RenderedPlot {
  /** The plot's id (`loss`, ...). */
  id: string;
  /** Title (also drawn inside the SVG). */
  title: string;
  /** One sentence on how to read it. */
  caption: string;
  /** The `<svg>` element. */
  svg: string;
  /** The section it belongs to. */
  section: PlotSection;
}

/** What the page shows. */
export interface PageContent {
  /** Runs in the order given, with their totals. */
  runs: { run: RunData; summary: RunSummary }[];
  /** Bench files in the order given. */
  benches: BenchData[];
  /** The schedule sweep, null when none. */
  grid: ScheduleGridData | null;
  /** Plots in page order. */
  plots: RenderedPlot[];
  /** Plots left out, with the reason. */
  skipped: { id: string; reason: string }[];
  /** Version of ssd that wrote the page. */
  version: string;
}

const CSS = `
:root { color-scheme: light; }
body { margin: 0; background: #f6f7f9; color: #1d2126;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
main { max-width: 1000px; margin: 0 auto; padding: 24px 20px 40px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; border-bottom: 1px solid #dde1e6; padding-bottom: 4px; }
p.sub { margin: 0 0 12px; color: #5b636d; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; background: white; font-variant-numeric: tabular-nums;
  border: 1px solid #dde1e6; }
caption { text-align: left; padding: 4px 0; color: #5b636d; }
th, td { padding: 5px 10px; border-bottom: 1px solid #eceef1; text-align: right; white-space: nowrap; }
th { background: #f0f2f5; font-weight: 600; }
td.l, th.l { text-align: left; }
.dir { color: #8a929c; font-size: 12px; white-space: normal; word-break: break-all; }
.flags { color: #8a929c; font-size: 12px; white-space: normal; }
.flag { white-space: nowrap; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
figure { margin: 14px 0; padding: 12px; background: white; border: 1px solid #dde1e6; }
figure svg { display: block; max-width: 100%; height: auto; }
figcaption { color: #5b636d; font-size: 13px; margin-top: 6px; }
ul.skipped { color: #5b636d; }
footer { margin-top: 28px; color: #8a929c; font-size: 12px; }
`;

const ESC: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Escapes text for HTML content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESC[c]);
}

/** A number for a table cell, or an en dash when unknown. */
function num(v: number | null | undefined, digits: number): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(digits);
}

function pct(v: number | null): string {
  return v === null ? "–" : `${(100 * v).toFixed(1)}%`;
}

/** `83 s`, `6 min 47 s`, `1 h 02 min`. */
export function duration(s: number | null): string {
  if (s === null) return "–";
  if (s < 59.5) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  // Round first, so that 419.7 s reads 7 min 00 s, not 6 min 60 s.
  const t = Math.round(s);
  const m = Math.floor(t / 60);
  if (m < 60) return `${m} min ${String(t - 60 * m).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

function swatch(i: number, color = PALETTE[i % PALETTE.length]): string {
  return `<span class="swatch" style="background:${color}"></span>`;
}

function table(head: string[], body: string[][], caption = ""): string {
  const cls = (i: number) => (i === 0 ? ' class="l"' : "");
  const th = head.map((h, i) => `<th${cls(i)}>${h}</th>`).join("");
  const trs = body.map((r) => `<tr>${r.map((c, i) => `<td${cls(i)}>${c}</td>`).join("")}</tr>`);
  const cap = caption ? `<caption>${caption}</caption>` : "";
  return `<div class="scroll"><table>${cap}<thead><tr>${th}</tr></thead>` +
    `<tbody>${trs.join("\n")}</tbody></table></div>`;
}

function runTable(runs: PageContent["runs"]): string {
  const head = [
    "run",
    "schedule",
    "steps",
    "val loss",
    "val loss MoE",
    "bits/byte",
    "wall time",
    "sparse steps",
    "FFN FLOPs vs dense",
  ];
  const body = runs.map(({ run, summary: s }, i) => [
    `${swatch(i)}${escapeHtml(run.label)}<br><span class="dir">${escapeHtml(run.dir)}</span>`,
    escapeHtml(run.schedule),
    String(s.steps),
    num(s.val_loss, 4),
    s.val_loss_moe === null ? "–" : `${num(s.val_loss_moe, 4)} (k=${s.top_k ?? "?"})`,
    num(s.val_bpb, 4),
    duration(s.wall_s),
    pct(s.sparse_share),
    pct(s.flops_ratio),
  ]);
  return table(head, body);
}

function benchTable(b: BenchData, i: number): string {
  const dense = b.rows.find((r) => r.mode === "dense")!;
  const d1 = (r: BenchData["rows"][number]) => r.decode.find((d) => d.batch === 1) ?? null;
  const denseDecode = d1(dense)?.tokens_per_s ?? null;
  const head = [
    "model",
    "FFN FLOPs/token",
    "val loss",
    "prefill tok/s",
    "decode b=1 tok/s",
    "decode b=1 ms/token",
    "decode speedup",
  ];
  const body = b.rows.map((r) => {
    const d = d1(r);
    const speedup = d && denseDecode ? `${(d.tokens_per_s / denseDecode).toFixed(2)}x` : "–";
    return [
      r.mode === "dense" ? "dense" : `MoE k=${r.top_k}`,
      r.ffn_flops_per_token === null ? "–" : r.ffn_flops_per_token.toLocaleString("en-US"),
      num(r.val_loss, 4),
      num(r.prefill_tokens_per_s, 0),
      num(d?.tokens_per_s, 0),
      num(d?.ms_per_token, 2),
      speedup,
    ];
  });
  const what = b.checkpoint ? ` (${escapeHtml(b.checkpoint)})` : "";
  return table(head, body, `${swatch(i)}${escapeHtml(b.label)}${what}`);
}

function signedPct(v: number | null): string {
  return v === null ? "–" : `${v >= 0 ? "+" : ""}${v.toFixed(2)}%`;
}

/** A row's overrides as the train flags that set them (`--stable-threshold 0.8`), or a dash. */
function overridesText(o: Record<string, unknown>): string {
  const flags = Object.entries(o).map(([k, v]) =>
    `${flagOf(k)} ${typeof v === "string" ? v : JSON.stringify(v)}`
  );
  // One unbreakable span per flag: a long list wraps between flags, not inside one.
  return flags.length === 0
    ? "–"
    : flags.map((f) => `<span class="flag">${escapeHtml(f)}</span>`).join(" ");
}

/** The sparse phases of a run from its switch events: `300–700, 1000–1350`. */
function sparseText(row: ScheduleGridData["rows"][number], steps: unknown): string {
  const spans: string[] = [];
  let from: number | null = null;
  for (const e of row.switch_events) {
    if (e.to === "sparse") from = e.step;
    else if (from !== null) {
      spans.push(`${from}–${e.step}`);
      from = null;
    }
  }
  if (from !== null) spans.push(`${from}–${typeof steps === "number" ? steps : "end"}`);
  return spans.length === 0 ? "–" : spans.join(", ");
}

function gridTable(g: ScheduleGridData): string {
  const k = sharedTopK(g);
  const head = [
    "schedule",
    "val loss (gap)",
    `val loss as MoE${k === null ? "" : ` top-${k}`} (gap)`,
    "FFN FLOPs vs dense",
    "wall time (vs dense)",
    "sparse steps",
    "switches",
    "sparse phases (steps)",
  ];
  const withGap = (v: number | null, gap: number | null) =>
    v === null ? "–" : `${num(v, 4)} (${signedPct(gap)})`;
  const colors = gridColors(g);
  const body = g.rows.map((r, i) => [
    `${swatch(i, colors[i])}${escapeHtml(r.name)}${r.default ? " <b>(defaults)</b>" : ""}` +
    `<br><span class="flags">${overridesText(r.overrides)}</span>`,
    r.schedule === "dense" ? num(r.val_nats, 4) : withGap(r.val_nats, r.dense_gap_pct),
    withGap(r.val_nats_moe, r.moe_gap_pct) +
    (k === null && r.top_k !== null ? ` k=${r.top_k}` : ""),
    num(r.ffn_flops_vs_dense, 2),
    `${duration(r.wall_s)} (${num(r.wall_vs_dense, 2)})`,
    pct(r.sparse_share),
    String(r.switches),
    sparseText(r, g.config.steps),
  ]);
  return table(head, body);
}

function gridSection(g: ScheduleGridData, plots: string[]): string {
  const c = g.config;
  const model = ["d_model", "n_layer", "d_ff", "ctx", "batch_size", "steps", "experts", "seed"]
    .filter((k) => c[k] !== undefined)
    .map((k) => `${k} ${escapeHtml(String(c[k]))}`)
    .join(", ");
  const facts = [
    `${g.rows.length} run${g.rows.length === 1 ? "" : "s"} of ${escapeHtml(g.label)}`,
    g.complete ? "" : "<b>partial: the sweep did not finish</b>",
    model,
    g.adapter ? `on ${escapeHtml(g.adapter)}` : "",
    g.date ? escapeHtml(g.date) : "",
  ].filter((s) => s !== "");
  const cmd = g.command ? `<p class="sub"><code>${escapeHtml(g.command)}</code></p>` : "";
  return [
    `<h2>Schedule sweep</h2>`,
    `<p class="sub">${facts.join("; ")}. Gaps are against the dense run's dense validation ` +
    `loss; costs are ratios to the dense run.</p>`,
    cmd,
    ...plots,
    gridTable(g),
  ].join("\n");
}

function figure(p: RenderedPlot): string {
  return `<figure id="plot-${p.id}" data-plot="${p.id}" aria-label="${escapeHtml(p.title)}">\n` +
    `${p.svg}\n<figcaption>${escapeHtml(p.caption)}</figcaption>\n</figure>`;
}

/** The whole page. */
export function reportHtml(c: PageContent): string {
  const names = c.runs.map(({ run }) => run.label);
  if (c.grid) names.push(c.grid.label);
  const inSection = (s: PlotSection) => c.plots.filter((p) => p.section === s).map(figure);
  const training = inSection("training");
  const bench = inSection("bench");
  const skipped = c.skipped.length === 0
    ? ""
    : `<p class="sub">Not plotted:</p><ul class="skipped">` +
      c.skipped.map((s) => `<li>${escapeHtml(s.id)}: ${escapeHtml(s.reason)}</li>`).join("") +
      `</ul>`;
  const benchSection = c.benches.length === 0 ? "" : [
    `<h2>Inference benchmark</h2>`,
    ...c.benches.map(benchTable),
    ...bench,
  ].join("\n");
  const runSection = c.runs.length === 0
    ? ""
    : `<h2>Runs</h2>\n${runTable(c.runs)}\n<h2>Training</h2>\n${training.join("\n")}\n${skipped}`;
  const inputs = [
    c.runs.length ? `${c.runs.length} run${c.runs.length === 1 ? "" : "s"}` : "",
    c.benches.length ? `${c.benches.length} bench file${c.benches.length === 1 ? "" : "s"}` : "",
    c.grid ? "a schedule sweep" : "",
  ].filter((s) => s !== "");
  const summary = inputs.join(", ");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>ssd report: ${escapeHtml(names.join(", "))}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<h1>ssd training report</h1>
<p class="sub">${
    summary.charAt(0).toUpperCase() + summary.slice(1)
  }. Loss in nats/token; FFN FLOPs count forward and backward passes of the FFN layers.</p>
${runSection}
${benchSection}
${c.grid ? gridSection(c.grid, inSection("schedules")) : ""}
<footer>Written by ssd ${
    escapeHtml(c.version)
  } (ssd report). Self-contained: no script, no network.</footer>
</main>
</body>
</html>
`;
}
