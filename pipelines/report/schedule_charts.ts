/**
 * The schedule sweep plots of `ssd report --schedules`: loss gap to the
 * dense run against a cost ratio (FFN FLOPs, wall time), one point per
 * schedule and evaluation mode (the final model evaluated dense, and as an
 * MoE at its trained top-k), each schedule a colour, each mode a marker
 * shape, the Pareto frontier of each mode as a step line, the defaults
 * ringed and labelled, dense at (1, 0).
 */
import { paretoFrontier } from "../bench/schedule_grid.ts";
import type { ScheduleGridData, ScheduleRowRead } from "./schedules.ts";
import {
  type Layer,
  PALETTE,
  PLOT_HEIGHT,
  PLOT_WIDTH,
  type PlotSpec,
  type Row,
  topLevel,
} from "./_style.ts";

/** Legend label of the dense-mode points and frontier. */
export const DENSE_MODE = "dense";

/** The top-k of every MoE evaluation of the sweep, or null when they differ or none ran. */
export function sharedTopK(grid: ScheduleGridData): number | null {
  const ks = new Set(grid.rows.map((r) => r.top_k).filter((k) => k !== null));
  return ks.size === 1 ? [...ks][0] : null;
}

/** Legend label of the MoE-mode points and frontier, with the top-k when all rows share one. */
export function moeMode(grid: ScheduleGridData): string {
  const k = sharedTopK(grid);
  return k === null ? "as MoE" : `as MoE (top-${k})`;
}

/** Colour of the dense reference: neutral, so that the palette's ten go to the schedules. */
export const DENSE_COLOR = "#555b62";

/** Colour of each row, in row order: the dense run neutral, the others the palette in turn. */
export function gridColors(grid: ScheduleGridData): string[] {
  let next = 0;
  return grid.rows.map((r) =>
    r.schedule === "dense" ? DENSE_COLOR : PALETTE[next++ % PALETTE.length]
  );
}

/** One point of a plot: a row in one evaluation mode. */
export interface GridPoint {
  /** The row's name (the colour). */
  run: string;
  /** DENSE_MODE or the MoE label (the shape). */
  mode: string;
  /** Cost over the dense run's. */
  x: number;
  /** Loss gap to the dense run, percent. */
  y: number;
  /** Whether the row is the defaults entry. */
  default: boolean;
}

/** The points of a plot: each row dense, then each row that has an MoE loss as an MoE. */
export function gridPoints(
  grid: ScheduleGridData,
  cost: (r: ScheduleRowRead) => number,
): GridPoint[] {
  const moe = moeMode(grid);
  const dense = grid.rows.map((r) => ({
    run: r.name,
    mode: DENSE_MODE,
    x: cost(r),
    y: r.dense_gap_pct,
    default: r.default,
  }));
  const sparse = grid.rows.filter((r) => r.moe_gap_pct !== null).map((r) => ({
    run: r.name,
    mode: moe,
    x: cost(r),
    y: r.moe_gap_pct!,
    default: r.default,
  }));
  return [...dense, ...sparse];
}

/** The frontier vertices of each mode, in x order (`i` keeps the line's order). */
export function frontierRows(points: readonly GridPoint[], modes: readonly string[]): Row[] {
  return modes.flatMap((mode) =>
    paretoFrontier(points.filter((p) => p.mode === mode), (p) => p.x, (p) => p.y)
      .map((p, i) => ({ mode, x: p.x, y: p.y, i, run: p.run }))
  );
}

function paretoPlot(
  grid: ScheduleGridData,
  o: { id: string; title: string; xTitle: string; cost: (r: ScheduleRowRead) => number },
  caption: string,
): PlotSpec {
  const modes = [DENSE_MODE, moeMode(grid)];
  const points = gridPoints(grid, o.cost);
  const x = {
    field: "x",
    type: "quantitative",
    title: o.xTitle,
    scale: { zero: false, padding: 16 },
  };
  const y = {
    field: "y",
    type: "quantitative",
    title: "validation loss gap to dense (%)",
    scale: { zero: false, padding: 16 },
  };
  const dash = {
    field: "mode",
    type: "nominal",
    title: "Pareto frontier",
    scale: { domain: modes, range: [[1, 0], [5, 3]] },
    legend: { symbolType: "stroke", symbolStrokeWidth: 1.4 },
  };
  const shape = {
    field: "mode",
    type: "nominal",
    title: "evaluated",
    scale: { domain: modes, range: ["circle", "triangle-up"] },
  };
  const labels: Row[] = [
    ...points.filter((p) => p.default).map((p) => ({ x: p.x, y: p.y, label: "defaults" })),
    ...points.filter((p) => p.run === denseName(grid) && p.mode === DENSE_MODE)
      .map((p) => ({ x: p.x, y: p.y, label: "dense" })),
  ];
  const layers: Layer[] = [
    {
      data: { values: [{ y: 0 }] },
      mark: { type: "rule", color: "#aaa", strokeDash: [2, 3], strokeWidth: 1 },
      encoding: { y },
    },
    {
      data: { values: frontierRows(points, modes) },
      mark: { type: "line", interpolate: "step-after", color: "#555", strokeWidth: 1.3 },
      encoding: { x, y, strokeDash: dash, order: { field: "i", type: "quantitative" } },
    },
    {
      data: { values: points },
      mark: { type: "point", filled: true, size: 70, opacity: 0.9 },
      encoding: {
        x,
        y,
        color: {
          field: "run",
          type: "nominal",
          title: "schedule",
          scale: { domain: grid.rows.map((r) => r.name), range: gridColors(grid) },
          legend: { columns: 6 },
        },
        shape,
      },
    },
    {
      data: { values: points.filter((p) => p.default) },
      mark: { type: "point", filled: false, size: 300, strokeWidth: 1.6, color: "#1d2126" },
      encoding: { x, y },
    },
    {
      data: { values: labels },
      mark: {
        type: "text",
        align: "left",
        baseline: "bottom",
        dx: 9,
        dy: -6,
        fontSize: 11,
        fontWeight: 600,
        color: "#1d2126",
      },
      encoding: { x, y, text: { field: "label", type: "nominal" } },
    },
  ];
  return {
    id: o.id,
    title: o.title,
    caption,
    spec: topLevel(o.id, o.title, {
      width: PLOT_WIDTH,
      height: Math.round(PLOT_HEIGHT * 1.5),
      layer: layers,
      resolve: { legend: { strokeDash: "independent", shape: "independent" } },
    }),
  };
}

function denseName(grid: ScheduleGridData): string {
  return grid.rows.find((r) => r.schedule === "dense")!.name;
}

const HOW_TO_READ = "Each schedule is two points: its final model evaluated dense (circles) " +
  "and as an MoE at the trained top-k (triangles), the loss gap to the dense run's dense " +
  "loss on the y axis; lower left is better. The step lines are each mode's Pareto " +
  "frontier: no run beats a point on it in both cost and loss. Ringed: the schedule defaults.";

/** Loss gap against the FFN FLOPs of training, dense = 1. */
export function scheduleFlopsPlot(grid: ScheduleGridData): PlotSpec {
  return paretoPlot(grid, {
    id: "schedules_flops",
    title: "Loss gap vs FFN FLOPs",
    xTitle: "FFN FLOPs of training (× dense)",
    cost: (r) => r.ffn_flops_vs_dense,
  }, `${HOW_TO_READ} x: the run's FFN FLOPs (forward and backward) over the dense run's.`);
}

/** Loss gap against the wall time of training, dense = 1. */
export function scheduleWallPlot(grid: ScheduleGridData): PlotSpec {
  return paretoPlot(
    grid,
    {
      id: "schedules_wall",
      title: "Loss gap vs wall time",
      xTitle: "wall time of training (× dense)",
      cost: (r) => r.wall_vs_dense,
    },
    `${HOW_TO_READ} x: the run's wall time (steps, monitor checks, MoE-fication) over the dense run's.`,
  );
}
