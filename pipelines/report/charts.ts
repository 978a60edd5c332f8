/**
 * The training plots of `ssd report` as vega-lite specs, one builder per
 * plot: loss, activation ratio per layer, pattern similarity, throughput and
 * FFN FLOPs against the step. Runs are overlaid and told apart by colour;
 * sparse phases are shaded in the run's colour. Data is embedded in the spec
 * (already cut to a few hundred points by `series.ts`), so the
 * rendered SVG needs nothing else.
 */
import type { TopLevelSpec } from "vega-lite";
import type { RunData } from "./data.ts";
import {
  changePoints,
  plainSeries,
  type Point,
  smoothingWindow,
  smoothSeries,
  sparseSpans,
} from "./series.ts";
import {
  colorOf,
  type Layer,
  PALETTE,
  PLOT_HEIGHT,
  PLOT_WIDTH,
  type PlotSpec,
  type Row,
  type SkippedPlot,
  topLevel,
} from "./_style.ts";

const STEP_X = {
  field: "step",
  type: "quantitative",
  title: "step",
  scale: { domainMin: 0, nice: false },
};

/** Shaded sparse intervals of every run (nothing when no run trained sparse). */
function phaseLayer(runs: readonly RunData[]): Layer[] {
  // One layer per run with a fixed colour rather than a colour encoding: an
  // encoded rect would merge into the runs' legend and turn it pale.
  return runs.flatMap((r, i) => {
    const values = sparseSpans(r.steps).map((s) => ({ run: r.label, x0: s.x0, x1: s.x1 }));
    if (values.length === 0) return [];
    return [{
      data: { values },
      mark: { type: "rect", opacity: 0.1, color: PALETTE[i % PALETTE.length] },
      encoding: { x: { field: "x0", type: "quantitative" }, x2: { field: "x1" } },
    }];
  });
}

function rows(run: string, pts: readonly Point[], extra: Row = {}): Row[] {
  return pts.map((p) => ({ run, step: p.x, v: p.y, ...extra }));
}

/** A single-panel plot of layers. */
function layered(id: string, title: string, layer: Layer[]): TopLevelSpec {
  return topLevel(id, title, { width: PLOT_WIDTH, height: PLOT_HEIGHT, layer });
}

const TRAIN = "train (moving mean)";
const VAL = "validation";

/** Share of a run's first steps whose loss may fall above the loss plot (the initial drop). */
const LOSS_CLIP_SHARE = 0.05;

/**
 * The loss axis: from the lowest loss plotted to the highest one after the
 * first `LOSS_CLIP_SHARE` of each run, so that the initial drop from ln(V)
 * does not squeeze the part of the curves where runs differ.
 */
function lossDomain(runs: readonly RunData[], values: readonly Row[]): [number, number] {
  const start = new Map(runs.map((r) => [r.label, LOSS_CLIP_SHARE * r.steps.at(-1)!.step]));
  const all = values.filter((v) => v.v !== null);
  const late = all.filter((v) => (v.step as number) > start.get(v.run as string)!);
  const lo = Math.min(...all.map((v) => v.v as number));
  const hi = Math.max(...(late.length > 0 ? late : all).map((v) => v.v as number));
  const pad = 0.04 * Math.max(hi - lo, 1e-3);
  return [lo - pad, hi + pad];
}

/** Training loss (moving mean) and validation loss vs step, phases shaded. */
export function lossPlot(runs: readonly RunData[]): PlotSpec {
  const labels = runs.map((r) => r.label);
  const values: Row[] = runs.flatMap((r) => {
    const val = r.steps.filter((s) => s.val_loss !== null).map((s) => ({
      x: s.step,
      y: s.val_loss,
    }));
    if (r.final && !val.some((p) => p.x === r.final!.step)) {
      val.push({ x: r.final.step, y: r.final.val_loss });
    }
    return [
      ...rows(r.label, smoothSeries(r.steps, (s) => s.loss), { series: TRAIN }),
      ...rows(r.label, val, { series: VAL }),
    ];
  });
  const dash = {
    field: "series",
    type: "nominal",
    title: null,
    scale: { domain: [TRAIN, VAL], range: [[1, 0], [5, 3]] },
  };
  const y = {
    field: "v",
    type: "quantitative",
    title: "loss (nats/token)",
    scale: { domain: lossDomain(runs, values), nice: false, zero: false },
  };
  const window = Math.max(...runs.map((r) => smoothingWindow(r.steps.length)));
  return {
    id: "loss",
    title: "Training and validation loss",
    caption: `Training loss is a trailing mean over ${window} step${window > 1 ? "s" : ""}; ` +
      "dots are validation losses (the last one on the full validation split). " +
      `The axis leaves out the first ${100 * LOSS_CLIP_SHARE}% of steps' initial drop. ` +
      "Shaded bands are sparse (MoE) phases.",
    spec: layered("loss", "Training and validation loss", [
      ...phaseLayer(runs),
      {
        data: { values },
        layer: [
          {
            mark: { type: "line", strokeWidth: 1.6, clip: true },
            encoding: { x: STEP_X, y, color: colorOf(labels), strokeDash: dash },
          },
          {
            transform: [{ filter: { field: "series", equal: VAL } }],
            mark: { type: "point", filled: true, size: 36, clip: true },
            encoding: { x: STEP_X, y, color: colorOf(labels) },
          },
        ],
      },
    ]),
  };
}

/** Activation ratio of each FFN layer vs step, one panel per layer. */
export function activationPlot(runs: readonly RunData[]): PlotSpec | SkippedPlot {
  const labels = runs.map((r) => r.label);
  const layers = Math.max(
    0,
    ...runs.map((r) => Math.max(0, ...r.steps.map((s) => s.act_ratio?.length ?? 0))),
  );
  if (layers === 0) return { id: "activation", reason: "no run logged act_ratio" };
  const cols = Math.min(layers, 3);
  const width = Math.floor((PLOT_WIDTH - (cols - 1) * 24) / cols);
  const panel = (l: number): Layer => ({
    title: { text: `layer ${l}`, fontSize: 12, fontWeight: 500 },
    width,
    height: Math.round(PLOT_HEIGHT * 0.75),
    layer: [
      ...phaseLayer(runs),
      {
        data: {
          values: runs.flatMap((r) =>
            rows(r.label, plainSeries(r.steps, (s) => s.act_ratio?.[l] ?? null))
          ),
        },
        mark: { type: "line", strokeWidth: 1.4 },
        encoding: {
          x: STEP_X,
          y: {
            field: "v",
            type: "quantitative",
            title: "share of activations > 0",
            axis: { format: ".0%" },
          },
          color: colorOf(labels),
        },
      },
    ],
  });
  const title = "Activation ratio per FFN layer";
  return {
    id: "activation",
    title,
    caption: "Share of FFN activations above zero on each step's batch (1 − sparsity). " +
      "Sparse steps do not measure it, hence the gaps in the shaded phases.",
    spec: topLevel("activation", title, {
      columns: cols,
      concat: Array.from({ length: layers }, (_, l) => panel(l)),
    }),
  };
}

/** Partition similarity at each stability check, with each run's switch threshold. */
export function similarityPlot(runs: readonly RunData[]): PlotSpec | SkippedPlot {
  const labels = runs.map((r) => r.label);
  const values: Row[] = runs.flatMap((r) =>
    r.steps.filter((s) => s.similarity !== null).map((s) => ({
      run: r.label,
      step: s.step,
      v: s.similarity,
    }))
  );
  if (values.length === 0) {
    return { id: "similarity", reason: "no run logged a pattern similarity" };
  }
  const thresholds = [...new Set(runs.flatMap((r) => r.checkpoint?.stable_threshold ?? []))];
  const low = Math.min(0, ...values.map((v) => v.v as number));
  const y = {
    field: "v",
    type: "quantitative",
    title: "partition similarity (ARI)",
    scale: { domain: [low, 1] },
  };
  return {
    id: "similarity",
    title: "Pattern similarity",
    caption: "Adjusted Rand index between consecutive expert partitions at each stability check; " +
      "the dashed line is the switch threshold (--stable-threshold).",
    spec: layered("similarity", "Pattern similarity", [
      ...phaseLayer(runs),
      ...(thresholds.length === 0 ? [] : [{
        data: { values: thresholds.map((t) => ({ t, label: `switch threshold ${t}` })) },
        layer: [
          {
            mark: { type: "rule", color: "#555", strokeDash: [6, 4], strokeWidth: 1.2 },
            encoding: { y: { field: "t", type: "quantitative" } },
          },
          {
            mark: {
              type: "text",
              align: "right",
              baseline: "bottom",
              dx: -2,
              dy: -3,
              color: "#555",
              fontSize: 11,
            },
            encoding: {
              y: { field: "t", type: "quantitative" },
              x: { value: PLOT_WIDTH },
              text: { field: "label" },
            },
          },
        ],
      }]),
      {
        data: { values },
        mark: { type: "line", point: { filled: true, size: 30 }, strokeWidth: 1.4 },
        encoding: { x: STEP_X, y, color: colorOf(labels) },
      },
    ]),
  };
}

/** Training throughput (moving mean) vs step. */
export function throughputPlot(runs: readonly RunData[]): PlotSpec | SkippedPlot {
  const labels = runs.map((r) => r.label);
  if (!runs.some((r) => r.steps.some((s) => s.tokens_per_s !== null))) {
    return { id: "throughput", reason: "no run logged tokens_per_s" };
  }
  const values = runs.flatMap((r) => rows(r.label, smoothSeries(r.steps, (s) => s.tokens_per_s)));
  return {
    id: "throughput",
    title: "Training throughput",
    caption: "Tokens per second of each training step (trailing mean, same window as the loss). " +
      "Shaded bands are sparse phases.",
    spec: layered("throughput", "Training throughput", [
      ...phaseLayer(runs),
      {
        data: { values },
        mark: { type: "line", strokeWidth: 1.4 },
        encoding: {
          x: STEP_X,
          y: { field: "v", type: "quantitative", title: "tokens/s" },
          color: colorOf(labels),
        },
      },
    ]),
  };
}

/** FFN FLOPs per step vs step, with what the same step costs dense. */
export function flopsPlot(runs: readonly RunData[]): PlotSpec | SkippedPlot {
  const labels = runs.map((r) => r.label);
  const g = (v: number | null) => (v === null ? null : v / 1e9);
  const values = runs.flatMap((r) => [
    ...rows(r.label, changePoints(r.steps, (s) => g(s.ffn_flops)), { series: "spent" }),
    ...rows(r.label, changePoints(r.steps, (s) => g(s.ffn_flops_dense)), {
      series: "dense equivalent",
    }),
  ]);
  if (values.length === 0) return { id: "ffn_flops", reason: "no run logged ffn_flops" };
  return {
    id: "ffn_flops",
    title: "FFN FLOPs per training step",
    caption: "FFN FLOPs (forward and backward) each step spent; the dashed line is what the step " +
      "would cost dense. The summary table gives the whole run's share.",
    spec: layered("ffn_flops", "FFN FLOPs per training step", [{
      data: { values },
      mark: { type: "line", interpolate: "step-after", strokeWidth: 1.6 },
      encoding: {
        x: STEP_X,
        y: { field: "v", type: "quantitative", title: "GFLOP per step", scale: { zero: true } },
        color: colorOf(labels),
        strokeDash: {
          field: "series",
          type: "nominal",
          title: null,
          scale: { domain: ["spent", "dense equivalent"], range: [[1, 0], [5, 3]] },
        },
      },
    }]),
  };
}
