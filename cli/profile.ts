/**
 * `ssd profile CKPT...`: per FFN layer, how sparse the activations are and
 * which neurons fire, and between consecutive checkpoints how stable the
 * activation structure is (pattern similarity of the expert partitions). Tables on stdout,
 * `--json` one JSON document, `--out DIR` the per-neuron arrays as .npy
 * files; progress goes to stderr, none with `--json`.
 */
import { Command } from "commander";
import {
  DEFAULT_PROFILE_CONFIG,
  HIST_BINS,
  type ProfileReport,
  runProfile,
} from "../pipelines/profile/run.ts";
import { nonNegativeInt, positiveInt } from "./_flags.ts";
import { type Progress, withProgress } from "./_progress.ts";

/** Options of `ssd profile`, as commander parses them. */
export interface ProfileFlags {
  /** Text file or folder whose validation part is the probe. */
  data?: string;
  /** Probe tokens. */
  tokens: number;
  /** Experts per partition. */
  experts: number;
  /** k of the oracle top-k sets. */
  topK?: number;
  /** Windows per forward pass. */
  batch: number;
  /** k-means iterations. */
  iters: number;
  /** k-means seed. */
  seed: number;
  /** Folder for per-neuron arrays and the report. */
  out?: string;
  /** Print one JSON document instead of tables. */
  json?: boolean;
}

/** Builds the `profile` subcommand. */
export function profileCommand(): Command {
  const d = DEFAULT_PROFILE_CONFIG;
  return new Command("profile")
    .description(
      "activation sparsity per FFN layer (activation ratio, dead and always-on neurons, " +
        "firing-frequency histogram) on held-out probe tokens, and pattern similarity between " +
        "consecutive checkpoints (ARI of expert partitions, overlap of oracle top-k experts); " +
        "checkpoints are taken in training-step order",
    )
    .argument("<checkpoints...>", "checkpoint files (.safetensors) of one model shape")
    .option(
      "--data <path>",
      "text file or folder of .txt files whose validation part (last 5%) holds the probe " +
        "tokens (default: the validation split of the embedded Brown Corpus)",
    )
    .option(
      "--tokens <n>",
      "probe tokens, from the start of the validation text",
      positiveInt,
      d.tokens,
    )
    .option("--experts <n>", "experts per partition (must divide d_ff)", positiveInt, d.experts)
    .option("--top-k <n>", "k of the oracle top-k expert sets (default: experts/4)", positiveInt)
    .option("--batch <n>", "windows per forward pass", positiveInt, d.batch)
    .option("--iters <n>", "balanced k-means iterations", positiveInt, d.iters)
    .option("--seed <n>", "balanced k-means seed", nonNegativeInt, d.seed)
    .option(
      "--out <dir>",
      "write per-neuron firing frequencies and expert labels (.npy, [n_layer, d_ff]) and " +
        "profile.json to this folder",
    )
    .option("--json", "print one JSON document on stdout instead of tables")
    .action(async (checkpoints: string[], flags: ProfileFlags) => {
      const report = await withProgress({ quiet: flags.json }, (progress) =>
        runProfile(
          {
            checkpoints,
            data: flags.data ?? null,
            tokens: flags.tokens,
            experts: flags.experts,
            top_k: flags.topK ?? null,
            batch: flags.batch,
            iters: flags.iters,
            seed: flags.seed,
            out: flags.out ?? null,
          },
          {
            onProgress: (ck, count, done, total) =>
              profileProgress(progress, ck, count, done, total),
          },
        ));
      console.log(flags.json ? JSON.stringify(report, null, 2) : formatProfile(report));
    });
}

function table(rows: string[][], indent = "  "): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) =>
    (indent + r.map((cell, c) => c === r.length - 1 ? cell : cell.padEnd(widths[c])).join("  "))
      .trimEnd()
  ).join("\n");
}

const pct = (x: number) => (100 * x).toFixed(1);

/** "step 500", or the file name when the checkpoint records no step. */
function label(r: ProfileReport, i: number): string {
  const c = r.checkpoints[i];
  return c.step !== null ? `step ${c.step}` : c.path.split(/[\\/]/).pop()!;
}

/** The human-readable form of `ssd profile`. */
export function formatProfile(r: ProfileReport): string {
  const parts: string[] = [];
  const c = r.config;
  parts.push(
    `probe     ${r.tokens.toLocaleString("en-US")} tokens of ${r.source}, windows of ${r.ctx}\n` +
      `model     ${c.n_layer} layers, d_model ${c.d_model}, d_ff ${c.d_ff}, ${c.activation}`,
  );
  const binLabel = `firing-frequency histogram (% of neurons, ${HIST_BINS} bins over 0..1)`;
  r.checkpoints.forEach((ck, i) => {
    const head = ["layer", "act ratio", "std", "p10", "p90", "dead %", "always-on %", binLabel];
    const rows = ck.layers.map((l) => [
      String(l.layer),
      l.act_ratio.toFixed(4),
      l.act_ratio_std.toFixed(4),
      l.act_ratio_p10.toFixed(4),
      l.act_ratio_p90.toFixed(4),
      pct(l.dead),
      pct(l.always_on),
      l.histogram.map((n) => pct(n / c.d_ff).padStart(5)).join(" "),
    ]);
    rows.push(["mean", ck.act_ratio.toFixed(4), "", "", "", "", "", ""]);
    const moe = ck.moe ? " (MoE checkpoint, profiled dense in original neuron order)" : "";
    const step = ck.step !== null ? ` (step ${ck.step})` : "";
    parts.push(
      `[${i + 1}/${r.checkpoints.length}] ${ck.path}${step}${moe}\n` + table([head, ...rows]),
    );
  });
  if (r.similarity.length > 0) {
    const rows = [["from", "to", "layer", "ARI", "overlap", "later partition"]];
    for (const s of r.similarity) {
      s.ari.forEach((a, l) => {
        rows.push([
          l === 0 ? label(r, s.from) : "",
          l === 0 ? label(r, s.to) : "",
          String(l),
          a.toFixed(4),
          s.overlap[l].toFixed(4),
          r.checkpoints[s.to].layers[l].kmeans_start === "warm" ? "warm start" : "fresh start",
        ]);
      });
      rows.push(["", "", "mean", s.ari_mean.toFixed(4), s.overlap_mean.toFixed(4), ""]);
    }
    parts.push(
      `pattern similarity of consecutive checkpoints (E = ${r.experts}, k = ${r.top_k})\n` +
        `  ARI: adjusted Rand index of the balanced k-means partitions of the normalised c_fc ` +
        `rows (seed ${r.kmeans.seed}); 1 = same partition, ~0 = unrelated\n` +
        `  overlap: mean share of each probe token's oracle top-${r.top_k} experts kept, both ` +
        `checkpoints grouped by the earlier one's partition; 1 = same experts, ` +
        `${(r.top_k / r.experts).toFixed(2)} = chance\n` +
        `  later partition: warm-started from the earlier one, or a fresh k-means++ start that ` +
        `reached a lower inertia (then a low ARI can mean an equally good, different partition)\n` +
        table(rows),
    );
  }
  if (r.out !== null) parts.push(`per-neuron arrays and profile.json written to ${r.out}`);
  parts.push(
    `time      ${r.timing.total_s.toFixed(1)} s (probe ${r.timing.forward_s.toFixed(1)} s, ` +
      `k-means ${r.timing.kmeans_s.toFixed(1)} s)`,
  );
  return parts.join("\n\n");
}

/** The checkpoint, its probe tokens done, and the rate; the work is all checkpoints' tokens. */
function profileProgress(
  progress: Progress,
  ck: number,
  count: number,
  done: number,
  total: number,
): void {
  progress.update(ck * total + done, count * total, (rate) => [
    `profile ckpt ${ck + 1}/${count}`,
    `${done}/${total} tokens`,
    rate === null ? "" : `${rate.toFixed(0)} tok/s`,
  ]);
}
