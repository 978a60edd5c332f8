/**
 * `ssd eval CKPT`: the deterministic eval (mean next-token NLL over
 * every token of the text) as a small table, or with `--json` one JSON
 * object with exactly the keys nll, bpb, ppl, tokens, top_k. A progress line with tokens/s and ETA
 * goes to stderr when stderr is a terminal.
 */
import { Command, InvalidArgumentError } from "commander";
import { DEFAULT_EVAL_CONFIG, type EvalReport, runEval } from "../pipelines/eval.ts";
import { intArg } from "./_flags.ts";

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

/** Parses a positive integer flag value; anything else is a usage error. */
function positiveInt(value: string): number {
  const n = intArg(value);
  if (n < 1) throw new InvalidArgumentError(`expected a positive integer, got "${value}"`);
  return n;
}

/** Builds the `eval` subcommand. */
export function evalCommand(): Command {
  return new Command("eval")
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
    .option("--batch <n>", "windows per forward pass", positiveInt, DEFAULT_EVAL_CONFIG.batch)
    .option(
      "--top-k <k>",
      "experts per token for an MoE checkpoint (default: its top_k)",
      positiveInt,
    )
    .option("--dense", "evaluate an MoE checkpoint with all experts (the dense model)")
    .option("--json", "print one JSON object (nll, bpb, ppl, tokens, top_k) on stdout")
    .action(async (checkpoint: string, flags: EvalFlags) => {
      const progress = Deno.stderr.isTerminal() ? progressLine() : undefined;
      let report: EvalReport;
      try {
        report = await runEval(
          {
            checkpoint,
            data: flags.data ?? null,
            batch: flags.batch,
            top_k: flags.topK ?? null,
            dense: flags.dense ?? false,
          },
          { onProgress: progress?.update },
        );
      } finally {
        progress?.done();
      }
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

/** A one-line progress display on stderr, redrawn in place. */
function progressLine(): { update(done: number, total: number): void; done(): void } {
  const enc = new TextEncoder();
  const t0 = performance.now();
  let drawn = false;
  const write = (s: string) => Deno.stderr.writeSync(enc.encode(s));
  return {
    update(done, total) {
      const s = (performance.now() - t0) / 1000;
      const rate = done / Math.max(s, 1e-9);
      const eta = rate > 0 ? (total - done) / rate : 0;
      const pct = ((100 * done) / total).toFixed(0).padStart(3);
      write(
        `\r\x1b[2Keval ${pct}%  ${done}/${total} tokens  ${rate.toFixed(0)} tok/s  ` +
          `ETA ${eta.toFixed(0)}s`,
      );
      drawn = true;
    },
    done() {
      if (drawn) write("\r\x1b[2K");
    },
  };
}
