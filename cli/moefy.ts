/**
 * `ssd moefy CKPT --experts E -o OUT`: flags → `runMoefy`; prints per-layer
 * router and oracle coverage, and the validation loss at each k next to the
 * dense loss (a table, or `--json`). Progress (layers clustered) goes to
 * stderr, none with `--json`.
 */
import { Command, Option } from "commander";
import { DEFAULT_MOEFY_CONFIG, type MoefyReport, runMoefy } from "../pipelines/moefy.ts";
import { intArg, positiveInt } from "./_flags.ts";
import { withProgress } from "./_progress.ts";

interface MoefyFlags {
  experts: number;
  topK?: number;
  method: "param" | "coact";
  router: "centroid" | "mlp";
  output: string;
  data?: string;
  tokens: number;
  evalTokens: number;
  iters: number;
  seed: number;
  json?: boolean;
}

/** Builds the `moefy` subcommand. */
export function moefyCommand(): Command {
  const d = DEFAULT_MOEFY_CONFIG;
  return new Command("moefy")
    .description(
      "turn a dense checkpoint into an MoE checkpoint: cluster each FFN's neurons into equal " +
        "experts, permute them, build routers, report coverage and loss at several top-k",
    )
    .argument("<checkpoint>", "dense checkpoint (.safetensors)")
    .requiredOption("--experts <E>", "experts per FFN layer (divides d_ff)", positiveInt)
    .requiredOption("-o, --output <file>", "MoE checkpoint to write")
    .option("--top-k <k>", "experts per token by default (default E/4)", intArg)
    .addOption(
      new Option("--method <m>", "cluster c_fc rows (param) or co-activation (coact)")
        .choices(["param", "coact"]).default(d.method),
    )
    .addOption(
      new Option("--router <r>", "centroid router or one learned on activations (mlp)")
        .choices(["centroid", "mlp"]).default(d.router),
    )
    .option("--data <path>", "text whose validation part gives probes and loss (default Brown)")
    .option("--tokens <n>", "held-out probe tokens", positiveInt, d.tokens)
    .option(
      "--eval-tokens <n>",
      "validation tokens for the loss at each k",
      positiveInt,
      d.eval_tokens,
    )
    .option("--iters <n>", "k-means iterations", positiveInt, d.iters)
    .option("--seed <n>", "seed of k-means++ and the router fit", intArg, d.seed)
    .option("--json", "print one JSON document")
    .action(async (checkpoint: string, f: MoefyFlags) => {
      const report = await withProgress({ quiet: f.json }, (progress) =>
        runMoefy({
          checkpoint,
          out: f.output,
          experts: f.experts,
          top_k: f.topK ?? null,
          method: f.method,
          router: f.router,
          data: f.data ?? null,
          tokens: f.tokens,
          eval_tokens: f.evalTokens,
          iters: f.iters,
          seed: f.seed,
        }, {
          onLayer: (done, total) => progress.update(done, total, [`moefy layer ${done}/${total}`]),
        }));
      console.log(f.json ? JSON.stringify(report, null, 2) : formatMoefy(report));
    });
}

/** Human-readable report. */
export function formatMoefy(r: MoefyReport): string {
  const lines = [
    `wrote ${r.out}: ${r.experts} experts per layer, top_k ${r.top_k}, ` +
    `method ${r.method}, router ${r.router} (k-means ${(r.kmeans_ms / 1000).toFixed(2)} s)`,
    "",
    "coverage of activation mass (router / oracle)",
    "layer  " + r.layers[0].coverage.map((c) => `k=${c.k}`.padEnd(16)).join(""),
  ];
  for (const l of r.layers) {
    lines.push(
      `${String(l.layer).padEnd(7)}` +
        l.coverage.map((c) => `${c.router.toFixed(3)} / ${c.oracle.toFixed(3)}`.padEnd(16)).join(
          "",
        ),
    );
  }
  lines.push("", "validation loss (nats/token, bits/byte)");
  lines.push(`dense   ${r.dense.nll.toFixed(4)}  ${r.dense.bpb.toFixed(4)}`);
  for (const m of r.moe) {
    const gap = (100 * (m.nll - r.dense.nll)) / r.dense.nll;
    lines.push(
      `k=${String(m.k).padEnd(5)} ${m.nll.toFixed(4)}  ${m.bpb.toFixed(4)}  (${
        gap >= 0 ? "+" : ""
      }${gap.toFixed(2)}% vs dense)`,
    );
  }
  return lines.join("\n");
}
