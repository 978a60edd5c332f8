/**
 * `ssd eval CKPT`: the deterministic eval (mean next-token NLL over
 * every token of the text) as a small table, or with `--json` one JSON
 * object with exactly the keys nll, bpb, ppl, tokens, top_k. A progress line with tokens/s and ETA
 * goes to stderr when stderr is a terminal.
 */
import { Command } from "commander";
import { DEFAULT_EVAL_CONFIG, type EvalReport, runEval } from "../pipelines/eval.ts";
import { expertFlags, positiveInt } from "./_flags.ts";
import { statusLine, withProgress } from "./_status_line.ts";

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
      const report = await withProgress(progressLine, (progress) =>
        runEval(
          {
            checkpoint,
            data: flags.data ?? null,
            batch: flags.batch,
            top_k: flags.topK ?? null,
            dense: flags.dense ?? false,
          },
          { onProgress: progress?.update },
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

/** Tokens scored, rate and ETA, on a status line. */
function progressLine(): { update(done: number, total: number): void; done(): void } {
  const line = statusLine();
  return {
    update(done, total) {
      const rate = done / Math.max(line.elapsed(), 1e-9);
      const eta = rate > 0 ? (total - done) / rate : 0;
      const pct = ((100 * done) / total).toFixed(0).padStart(3);
      line.draw(
        `eval ${pct}%  ${done}/${total} tokens  ${rate.toFixed(0)} tok/s  ETA ${eta.toFixed(0)}s`,
      );
    },
    done: line.done,
  };
}
