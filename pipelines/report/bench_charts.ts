/**
 * The bench plots of `ssd report`: from `ssd bench --json` files, inference
 * speed (prefill, batch-1 decode) and validation loss against the experts
 * per token k, each file a colour, the dense model a dashed reference line.
 */
import type { BenchData } from "./bench.ts";
import {
  colorOf,
  type Layer,
  PLOT_HEIGHT,
  PLOT_WIDTH,
  type PlotSpec,
  type Row,
  topLevel,
} from "./_style.ts";

const MOE = "MoE (top-k)";
const DENSE = "dense";

/** One k-axis panel of bench plots: MoE values vs k, dense as a dashed rule. */
function benchPanel(
  benches: readonly BenchData[],
  title: string,
  yTitle: string,
  get: (row: BenchData["rows"][number]) => number | null,
  opts: { width: number; zero: boolean },
): Layer {
  const labels = benches.map((b) => b.label);
  const moe: Row[] = [];
  const dense: Row[] = [];
  for (const b of benches) {
    for (const r of b.rows) {
      const v = get(r);
      if (v === null) continue;
      if (r.mode === "dense") dense.push({ run: b.label, v, kind: DENSE });
      else moe.push({ run: b.label, k: r.top_k, v, kind: MOE });
    }
  }
  const ks = moe.map((r) => r.k as number);
  const domain = ks.length === 0 ? [0, 1] : [Math.min(...ks), Math.max(...ks)];
  if (domain[0] === domain[1]) domain[1] = domain[0] + 1;
  const dash = {
    field: "kind",
    type: "nominal",
    title: null,
    scale: { domain: [MOE, DENSE], range: [[1, 0], [6, 4]] },
    legend: {
      symbolType: "stroke",
      symbolStrokeWidth: 1.6,
      encode: { symbols: { update: { stroke: { value: "#555" } } } },
    },
  };
  const color = colorOf(labels, "bench");
  const y = { field: "v", type: "quantitative", title: yTitle, scale: { zero: opts.zero } };
  return {
    title: { text: title, fontSize: 12, fontWeight: 500 },
    width: opts.width,
    height: PLOT_HEIGHT,
    layer: [
      {
        data: { values: dense },
        mark: { type: "rule", strokeWidth: 1.4 },
        encoding: { y, color, strokeDash: dash },
      },
      {
        data: { values: moe },
        mark: { type: "line", point: { filled: true, size: 36 }, strokeWidth: 1.6 },
        encoding: {
          x: {
            field: "k",
            type: "quantitative",
            title: "experts per token (k)",
            scale: { domain, nice: false },
            axis: { tickMinStep: 1, format: "d" },
          },
          y,
          color,
          strokeDash: dash,
        },
      },
    ],
  };
}

/** Inference tokens/s vs k: prefill and batch-1 decode, dense as the reference. */
export function benchSpeedPlot(benches: readonly BenchData[]): PlotSpec {
  // Speeds from zero, so that the gap to the dense line reads as a ratio.
  const speed = { width: Math.floor((PLOT_WIDTH - 24) / 2), zero: true };
  const decode1 = (r: BenchData["rows"][number]) =>
    r.decode.find((d) => d.batch === 1)?.tokens_per_s ?? null;
  const title = "Inference speed vs experts per token";
  return {
    id: "bench_speed",
    title,
    caption: "Tokens per second of the MoE model at each k (solid) and of the dense model " +
      "(dashed): prefill is a full forward over prompt-length batches, decode generates " +
      "one token at a time with a KV cache.",
    spec: topLevel("bench_speed", title, {
      hconcat: [
        benchPanel(benches, "prefill", "tokens/s", (r) => r.prefill_tokens_per_s, speed),
        benchPanel(benches, "decode, batch 1", "tokens/s", decode1, speed),
      ],
    }),
  };
}

/** Validation loss vs k, dense as the reference. */
export function benchLossPlot(benches: readonly BenchData[]): PlotSpec {
  const title = "Validation loss vs experts per token";
  return {
    id: "bench_loss",
    title,
    caption: "Validation loss (nats/token) of the MoE model at each k (solid) and of the " +
      "dense model (dashed); at k = E the two agree.",
    spec: topLevel(
      "bench_loss",
      title,
      benchPanel(benches, "", "validation loss (nats/token)", (r) => r.val_loss, {
        width: PLOT_WIDTH,
        zero: false,
      }),
    ),
  };
}
