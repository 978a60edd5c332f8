/**
 * `ssd bench CKPT`: dense against MoE inference at each k (pipelines/bench/run.ts):
 * FFN FLOPs, validation loss, prefill throughput and KV-cache decode speed
 * with the FFN's share of GPU time. Two tables on stdout by default; with
 * `--json` one JSON document (its contract is documented in pipelines/bench/json.ts). The
 * stage being measured goes to stderr, nothing with `--json`.
 */
import { Command, Option } from "commander";
import {
  benchJson,
  type BenchReport,
  type DecodeResult,
  DEFAULT_BENCH_CONFIG,
  runBench,
} from "../pipelines/bench/run.ts";
import { intListArg, positiveInt } from "./_flags.ts";
import { withProgress } from "./_progress.ts";

/** Options of `ssd bench`, as commander parses them. */
export interface BenchFlags {
  /** Experts per token to bench. */
  topK?: number[];
  /** Decode batches besides 1. */
  batch: number[];
  /** Prompt tokens. */
  promptLen?: number;
  /** Timed decode steps. */
  gen?: number;
  /** MoE-fy a dense checkpoint in memory. */
  experts?: number;
  /** Text for the loss. */
  data?: string;
  /** Tokens scored for the loss. */
  valTokens: number;
  /** Timed repetitions. */
  reps: number;
  /** One JSON document instead of tables. */
  json?: boolean;
}

/** Builds the `bench` subcommand. */
export function benchCommand(): Command {
  const d = DEFAULT_BENCH_CONFIG;
  return new Command("bench")
    .description(
      "dense vs MoE inference at each k on one checkpoint: FFN FLOPs, validation loss, prefill " +
        "throughput, and KV-cache decode speed with the FFN's share of GPU time",
    )
    .argument("<checkpoint>", "checkpoint file (.safetensors), dense or MoE")
    .option(
      "--top-k <list>",
      "experts per token to bench, e.g. 1,2,4 (default: 1, 2, 4, ... up to E, and the " +
        "checkpoint's top_k)",
      intListArg,
    )
    .addOption(
      new Option(
        "--batch <list>",
        "decode batch sizes besides 1, e.g. 4,8 (the largest is the prefill batch)",
      ).argParser(intListArg).default([...d.batch], d.batch.join(",")),
    )
    .option("--prompt-len <n>", "prompt tokens per sequence (default: ctx/2)", positiveInt)
    .option(
      "--gen <n>",
      "timed decode steps per sequence (default: ctx - prompt-len; prompt-len + gen <= ctx)",
      positiveInt,
    )
    .option(
      "--experts <E>",
      "MoE-fy a dense checkpoint in memory into E experts (as ssd moefy's defaults)",
      positiveInt,
    )
    .option(
      "--data <path>",
      "text file or folder of .txt files for the validation loss, all of it (default: the " +
        "validation split of the embedded Brown Corpus)",
    )
    .option(
      "--val-tokens <n>",
      "tokens scored for the validation loss, at most",
      positiveInt,
      d.val_tokens,
    )
    .option("--reps <n>", "timed repetitions (the median is reported)", positiveInt, d.reps)
    .option("--json", "print one JSON document on stdout")
    .action(async (checkpoint: string, flags: BenchFlags) => {
      const report = await withProgress({ quiet: flags.json }, (progress) =>
        runBench({
          checkpoint,
          top_k: flags.topK ?? null,
          batch: flags.batch,
          prompt_len: flags.promptLen ?? null,
          gen: flags.gen ?? null,
          experts: flags.experts ?? null,
          data: flags.data ?? null,
          val_tokens: flags.valTokens,
          reps: flags.reps,
        }, { onStage: (what) => progress.stage(`bench: ${what}`) }));
      console.log(flags.json ? JSON.stringify(benchJson(report), null, 2) : formatBench(report));
    });
}

function pct(x: number | null): string {
  return x === null ? "-" : `${(100 * x).toFixed(0)}%`;
}

function num(x: number | null, digits: number): string {
  return x === null ? "-" : x.toFixed(digits);
}

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    "  " + r.map((c, i) => (i < 2 ? c.padEnd(w[i]) : c.padStart(w[i]))).join("  ");
  return [line(head), ...rows.map(line)].join("\n");
}

/** The human-readable form of `ssd bench`: a setup block, a quality/prefill table, a decode table. */
export function formatBench(r: BenchReport): string {
  const m = r.model;
  const view = r.experts === null
    ? "dense only"
    : `${r.experts} experts${r.moefied ? ", MoE-fied in memory" : ""}`;
  const setup = [
    `checkpoint  ${r.checkpoint}  (${view})`,
    `model       d_model ${m.d_model}, n_layer ${m.n_layer}, n_head ${m.n_head}, d_ff ${m.d_ff}, ` +
    `ctx ${m.ctx}, vocab ${m.vocab}`,
    `device      ${r.device}`,
    `prompt      ${r.prompt_len} tokens, then ${r.gen} timed decode steps; median of ${r.reps} reps`,
    `loss on     ${r.val_source}, ${r.val_tokens.toLocaleString("en-US")} tokens`,
  ].map((s) => "  " + s).join("\n");
  const dense = r.rows[0];
  const name = (k: number | null) => (k === null ? "dense" : "moe");
  const first = table(
    ["mode", "k", "FFN FLOP/tok", "vs dense", "val loss", "bpb", "prefill tok/s", "FFN share"],
    r.rows.map((row) => [
      name(row.top_k),
      row.top_k === null ? "-" : String(row.top_k),
      row.ffn_flops_per_token.toLocaleString("en-US"),
      `${(row.ffn_flops_per_token / dense.ffn_flops_per_token).toFixed(2)}x`,
      row.val_loss.toFixed(4),
      row.val_bpb.toFixed(4),
      row.prefill.tokens_per_s.toFixed(0),
      pct(row.prefill.ffn_share),
    ]),
  );
  const denseAt = (b: number): DecodeResult | undefined => dense.decode.find((d) => d.batch === b);
  const second = table(
    ["mode", "k", "batch", "tok/s", "ms/step", "vs dense", "FFN ms/step", "vs dense", "FFN share"],
    r.rows.flatMap((row) =>
      row.decode.map((d) => {
        const base = denseAt(d.batch);
        const ffnRatio = base?.ffn_ms_per_token && d.ffn_ms_per_token !== null
          ? `${(d.ffn_ms_per_token / base.ffn_ms_per_token).toFixed(2)}x`
          : "-";
        return [
          name(row.top_k),
          row.top_k === null ? "-" : String(row.top_k),
          String(d.batch),
          d.tokens_per_s.toFixed(0),
          d.ms_per_token.toFixed(2),
          base ? `${(d.ms_per_token / base.ms_per_token).toFixed(2)}x` : "-",
          num(d.ffn_ms_per_token, 2),
          ffnRatio,
          pct(d.ffn_share),
        ];
      })
    ),
  );
  return [
    setup,
    "",
    "Quality and prefill (prefill batch " + dense.prefill.batch + ")",
    first,
    "",
    "Decode (KV cache; one step = one token for each sequence)",
    second,
  ].join("\n");
}
