/**
 * `ssd export CKPT -o DIR --format hf|nanogpt`: a checkpoint's weights as
 * a folder for PyTorch (Hugging Face GPT-2 or nanoGPT); prints the files
 * written, or with `--json` one JSON document (`runExport`'s report).
 */
import { Command, Option } from "commander";
import { EXPORT_FORMATS, type ExportReport, runExport } from "../pipelines/export.ts";

/** Options of `ssd export`, as commander parses them. */
export interface ExportFlags {
  /** The folder to write. */
  output: string;
  /** `hf` or `nanogpt`. */
  format: (typeof EXPORT_FORMATS)[number];
  /** Replace an existing folder. */
  force?: boolean;
  /** Print one JSON document. */
  json?: boolean;
}

/** Builds the `export` subcommand. */
export function exportCommand(): Command {
  return new Command("export")
    .description(
      "write a checkpoint's weights as a folder for PyTorch: Hugging Face GPT-2 " +
        "(GPT2LMHeadModel.from_pretrained) or nanoGPT; MoE checkpoints export their dense " +
        "form plus moe.json (no optimizer moments)",
    )
    .argument("<checkpoint>", "checkpoint file (.safetensors)")
    .requiredOption("-o, --output <dir>", "folder to write (must not exist, unless --force)")
    .addOption(
      new Option("--format <f>", "hf (Hugging Face GPT-2) or nanogpt")
        .choices([...EXPORT_FORMATS]).default("hf"),
    )
    .option("--force", "replace an existing folder")
    .option("--json", "print one JSON document (files written, format, parameters)")
    .action(async (checkpoint: string, f: ExportFlags) => {
      const report = await runExport({
        checkpoint,
        out: f.output,
        format: f.format,
        force: f.force ?? false,
      });
      console.log(f.json ? JSON.stringify(report, null, 2) : formatExport(report));
    });
}

/** The human-readable form: what was written, and how to load it. */
export function formatExport(r: ExportReport): string {
  const kind = r.format === "hf" ? "Hugging Face GPT-2" : "nanoGPT";
  const moe = r.moe ? `, dense form of ${r.moe.experts} experts (top_k ${r.moe.top_k})` : "";
  const w = Math.max(...r.files.map((f) => f.path.length));
  const load = r.format === "hf"
    ? `GPT2LMHeadModel.from_pretrained(${JSON.stringify(r.out)})`
    : "nanoGPT's GPT(GPTConfig(...)).load_state_dict(...): see config.json's ssd note";
  return [
    `exported ${r.checkpoint} -> ${r.out} (${kind}, ${r.parameters} parameters${moe})`,
    ...r.files.map((f) => `  ${f.path.padEnd(w)}  ${f.bytes} bytes`),
    `load with ${load}`,
  ].join("\n");
}
