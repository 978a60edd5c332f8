/**
 * `ssd eval CKPT`: the deterministic eval (mean next-token NLL over
 * every token of the text) as a small table, or with `--json` one JSON
 * object with exactly the keys nll, bpb, ppl, tokens, top_k. Progress (tokens
 * scored, tokens/s, ETA) goes to stderr, none with `--json`.
 */
import { Command } from "commander";
import { DEFAULT_EVAL_CONFIG, type EvalReport, runEval } from "../pipelines/eval.ts";
import { expertFlags, positiveInt } from "./_flags.ts";
import { type Progress, withProgress } from "./_progress.ts";

/** Options of `ssd eval`, as commander parses them. */
export interface EvalFlags {
  /** Text file or folder of .txt files. */
  data?: string;
  /** Windows per forward pass. */
  batch: number;
  /** Print one JSON object instead of a table. */
  json?: boolean;
  /** Experts per token for an MoE checkpoint. */
  topK?: number;
  /** Evaluate an MoE checkpoint dense (all experts). */
  dense?: boolean;
}

/** Builds the `eval` subcommand. */
export function evalCommand(): Command {
  const cmd = new Command("eval")
    .description(
      "score a checkpoint on text: mean next-token loss (nats/token), bits per byte and " +
        "perplexity over every token, in consecutive ctx windows (deterministic)",
    )
    .argument("<checkpoint>", "checkpoint file (.safetensors) to evaluate")
    .option(
      "--data <path>",
      "text file or folder of .txt files, all of it scored (default: the validation split " +
        "of the embedded Brown Corpus)",
    )
    .option("--batch <n>", "windows per forward pass", positiveInt, DEFAULT_EVAL_CONFIG.batch);
  return expertFlags(cmd, "evaluate an MoE checkpoint with all experts (the dense model)")
    .option("--json", "print one JSON object (nll, bpb, ppl, tokens, top_k) on stdout")
    .action(async (checkpoint: string, flags: EvalFlags) => {
      const report = await withProgress({ quiet: flags.json }, (progress) =>
        runEval(
          {
            checkpoint,
            data: flags.data ?? null,
            batch: flags.batch,
            top_k: flags.topK ?? null,
            dense: flags.dense ?? false,
          },
          { onProgress: (done, total) => evalProgress(progress, done, total) },
        ));
      console.log(flags.json ? JSON.stringify(evalJson(report)) : formatEval(report));
    });
}

/** The `--json` document: exactly nll, bpb, ppl, tokens, top_k, in that order. */
export function evalJson(r: EvalReport): Record<string, number | null> {
  return { nll: r.nll, bpb: r.bpb, ppl: r.ppl, tokens: r.tokens, top_k: r.top_k };
}

/** The human-readable form of `ssd eval`. */
export function formatEval(r: EvalReport): string {
  const rows: [string, string][] = [
    ["checkpoint", r.checkpoint],
    ["data", r.source],
    ["tokens", `${r.tokens.toLocaleString("en-US")} scored (windows of ${r.ctx})`],
    ["experts", r.top_k === null ? "dense" : `top-${r.top_k}`],
    ["nats/token", r.nll.toFixed(4)],
    ["bits/byte", r.bpb.toFixed(4)],
    ["perplexity", r.ppl.toFixed(3)],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join("\n");
}

/** Tokens scored of all, and the rate (the ETA is the display's). */
function evalProgress(progress: Progress, done: number, total: number): void {
  progress.update(done, total, (rate) => [
    `eval ${Math.floor((100 * done) / total)}%`,
    `${done}/${total} tokens`,
    rate === null ? "" : `${rate.toFixed(0)} tok/s`,
  ]);
}
