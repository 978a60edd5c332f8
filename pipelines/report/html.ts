/**
 * The page of `ssd report`: one self-contained HTML file (inline CSS and
 * inline SVG, no script, no external resource; a Content-Security-Policy
 * forbids any load, so a page that tried would show console errors). It
 * holds a summary table per run, the training plots, and, with bench files,
 * a table and the plots per k.
 */
import type { BenchData } from "./bench.ts";
import { PALETTE } from "./_style.ts";
import type { RunData, RunSummary } from "./data.ts";

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
  /** Whether it belongs to the bench section. */
  bench: boolean;
}

/** What the page shows. */
export interface PageContent {
  /** Runs in the order given, with their totals. */
  runs: { run: RunData; summary: RunSummary }[];
  /** Bench files in the order given. */
  benches: BenchData[];
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
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.round(s - 60 * m)).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

function swatch(i: number): string {
  return `<span class="swatch" style="background:${PALETTE[i % PALETTE.length]}"></span>`;
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

function figure(p: RenderedPlot): string {
  return `<figure id="plot-${p.id}" data-plot="${p.id}" aria-label="${escapeHtml(p.title)}">\n` +
    `${p.svg}\n<figcaption>${escapeHtml(p.caption)}</figcaption>\n</figure>`;
}

/** The whole page. */
export function reportHtml(c: PageContent): string {
  const names = c.runs.map(({ run }) => run.label);
  const training = c.plots.filter((p) => !p.bench).map(figure);
  const bench = c.plots.filter((p) => p.bench).map(figure);
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
<p class="sub">${c.runs.length} run${c.runs.length === 1 ? "" : "s"}${
    c.benches.length ? `, ${c.benches.length} bench file${c.benches.length === 1 ? "" : "s"}` : ""
  }. Loss in nats/token; FFN FLOPs count forward and backward passes of the FFN layers.</p>
<h2>Runs</h2>
${runTable(c.runs)}
<h2>Training</h2>
${training.join("\n")}
${skipped}
${benchSection}
<footer>Written by ssd ${
    escapeHtml(c.version)
  } (ssd report). Self-contained: no script, no network.</footer>
</main>
</body>
</html>
`;
}
