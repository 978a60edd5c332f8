/**
 * What the plots of `ssd report` share: the plot record, sizes, the palette
 * (a run keeps its colour in every plot and in the tables), fonts and axis
 * style, and the top-level wrapper of a vega-lite spec.
 */
import type { TopLevelSpec } from "vega-lite";

/** One plot of the report. */
export interface PlotSpec {
  /** File stem of `--svg` output and the figure's id (`loss`, `bench_speed`, ...). */
  id: string;
  /** Title drawn in the plot. */
  title: string;
  /** One sentence under the plot saying how to read it. */
  caption: string;
  /** The vega-lite spec, data included. */
  spec: TopLevelSpec;
}

/** A plot that was left out, and why (no run logged what it shows). */
export interface SkippedPlot {
  /** The plot's id. */
  id: string;
  /** Why it is missing. */
  reason: string;
}

/** Plot width in px (one panel; panels of a row share it). */
export const PLOT_WIDTH = 760;
/** Plot height in px. */
export const PLOT_HEIGHT = 240;

/** Tableau 10: distinct on screen and in print; runs beyond ten reuse colours. */
export const PALETTE: readonly string[] = [
  "#4e79a7",
  "#f28e2b",
  "#e15759",
  "#76b7b2",
  "#59a14f",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
  "#9c755f",
  "#bab0ac",
];

/** Font stack of the plots (the page uses the same). */
export const FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";

/** vega-lite config of every plot. */
export const CONFIG = {
  font: FONT,
  background: "white",
  view: { stroke: "#ddd" },
  axis: { labelFontSize: 11, titleFontSize: 12, gridColor: "#eee", titleFontWeight: 500 },
  legend: {
    labelFontSize: 11,
    titleFontSize: 11,
    orient: "bottom",
    direction: "horizontal",
    labelLimit: 320,
  },
  title: { fontSize: 14, anchor: "start", fontWeight: 600, offset: 10 },
  header: { labelFontSize: 12, titleFontSize: 12 },
} as const;

/**
 * Parts of specs are plain objects: vega-lite's own types reject partial
 * layers, and its compiler checks the whole spec anyway (`renderSvg`
 * collects its warnings, and the tests require none).
 */
export type Layer = Record<string, unknown>;
/** One data row of a plot. */
export type Row = Record<string, string | number | null>;

/** The colour channel of runs (or bench files): fixed domain so colours agree across plots. */
export function colorOf(labels: readonly string[], title: string | null = "run") {
  return {
    field: "run",
    type: "nominal",
    title,
    scale: { domain: [...labels], range: PALETTE },
  };
}

/** A complete spec: `body` plus schema, title (also the SVG's accessible description) and config. */
export function topLevel(id: string, title: string, body: Layer): TopLevelSpec {
  return {
    ...body,
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    description: `${id}: ${title}`,
    title,
    config: CONFIG,
  } as unknown as TopLevelSpec;
}
