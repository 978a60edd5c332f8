/**
 * `ssd inspect CKPT`: a checkpoint's file, format, model config, parameter
 * count, tensors, training state and MoE layout, read from the header alone;
 * `--json` prints the same as one JSON document.
 */
import { Command } from "commander";
import { type InspectReport, runInspect, type TensorSummary } from "../pipelines/inspect.ts";

/** Options of `ssd inspect`, as commander parses them. */
export interface InspectFlags {
  /** Print one JSON document instead of tables. */
  json?: boolean;
  /** List every optimizer-moment tensor. */
  all?: boolean;
}

/** Builds the `inspect` subcommand. */
export function inspectCommand(): Command {
  return new Command("inspect")
    .description(
      "show what a checkpoint holds: config, parameter count, tensors and shapes, training " +
        "state, MoE layout (reads the header only; plain safetensors files work too)",
    )
    .argument("<checkpoint>", "checkpoint file (.safetensors)")
    .option("--all", "list every optimizer-moment tensor instead of a summary")
    .option("--json", "print one JSON document on stdout instead of tables")
    .action(async (checkpoint: string, flags: InspectFlags) => {
      const report = await runInspect({ checkpoint, all: flags.all ?? false });
      console.log(flags.json ? JSON.stringify(report, null, 2) : formatInspect(report));
    });
}

/** `12345678` → `"12345678 (12.35M)"`; counts under 10K print once. */
function fmtCount(n: number): string {
  if (n >= 1e9) return `${n} (${(n / 1e9).toFixed(2)}B)`;
  if (n >= 1e6) return `${n} (${(n / 1e6).toFixed(2)}M)`;
  if (n >= 1e4) return `${n} (${(n / 1e3).toFixed(1)}K)`;
  return String(n);
}

/** `1536` → `"1.5 KiB"`. */
function fmtBytes(n: number): string {
  for (const [unit, size] of [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]] as const) {
    if (n >= size) return `${(n / size).toFixed(1)} ${unit}`;
  }
  return `${n} B`;
}

function table(rows: string[][], indent = "  "): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) =>
    indent + r.map((cell, c) => c === r.length - 1 ? cell : cell.padEnd(widths[c])).join("  ")
  ).join("\n");
}

function tensorRows(ts: TensorSummary[]): string[][] {
  return ts.map((t) => [t.name, t.dtype, `[${t.shape.join(", ")}]`, String(t.numel)]);
}

/** `null` as `-`, anything else as its string. */
function show(v: unknown): string {
  return v === null ? "-" : String(v);
}

/** Path, size, header length and format. */
function fileSection(r: InspectReport): string {
  const fmt = r.ssd_format === null
    ? `${r.format} (no ssd metadata: not written by ssd)`
    : `${r.format}, ssd format ${r.ssd_format}`;
  return "File\n" + table([
    ["path", r.path],
    ["size", `${r.file_bytes} bytes (${fmtBytes(r.file_bytes)})`],
    ["header", `${r.header_bytes} bytes`],
    ["format", fmt],
  ]);
}

/** The model config (or why there is none) and the parameter count. */
function modelSection(r: InspectReport): string {
  const model: string[][] = [];
  if (r.config) {
    for (const [k, v] of Object.entries(r.config)) {
      model.push([k, typeof v === "string" ? v : JSON.stringify(v)]);
    }
  } else model.push(["config", "(none)"]);
  if (r.config_error) model.push(["invalid", r.config_error]);
  const params = r.parameters ?? r.tensor_parameters;
  model.push([
    "parameters",
    `${fmtCount(params)}${r.parameters === null ? ", summed over the tensors" : ""}`,
  ]);
  return "Model\n" + table(model);
}

/** Tensors that do not match the config; null when all do. */
function mismatchSection(r: InspectReport): string | null {
  if (r.mismatches.length === 0) return null;
  return `Mismatches with the config (${r.mismatches.length}): the other commands refuse this ` +
    `file\n` + r.mismatches.map((m) => `  ${m}`).join("\n");
}

const TENSOR_HEADER = ["name", "dtype", "shape", "numel"];

/** The model tensors, one row each. */
function tensorSection(r: InspectReport): string {
  return `Tensors (${r.tensors.length})\n` + table([TENSOR_HEADER, ...tensorRows(r.tensors)]);
}

/** The optimizer moments: listed with `--all`, else summarised in one row. */
function optimizerSection(r: InspectReport): string {
  const o = r.optimizer;
  if (o.tensors && o.tensors.length > 0) {
    return `Optimizer moments (${o.count})\n` + table([TENSOR_HEADER, ...tensorRows(o.tensors)]);
  }
  return "Optimizer\n" + (o.count === 0 ? "  (no moments: weights only)" : table([[
    "moments",
    `${o.count} tensors (optim.m.*, optim.v.*), ${o.numel} values, ${fmtBytes(o.bytes)}` +
    " (--all lists them)",
  ]]));
}

/** Step, tokens seen, phase and its history, data and tokenizer. */
function trainSection(r: InspectReport): string {
  if (!r.train) return "Training state\n  (none)";
  const t = r.train;
  const history = t.phase_history.length === 0
    ? "(none)"
    : t.phase_history.map((h) => JSON.stringify(h)).join(", ");
  return "Training state\n" + table([
    ["step", show(t.step)],
    [
      "tokens seen",
      t.tokens_seen === null ? "-" : fmtCount(t.tokens_seen),
    ],
    ["phase", show(t.phase)],
    ["phase history", history],
    ["data", show(t.data_source)],
    ["tokenizer", show(t.tokenizer)],
  ]);
}

/** The MoE layout; null for a dense checkpoint. */
function moeSection(r: InspectReport): string | null {
  if (!r.moe) return null;
  const m = r.moe;
  return "MoE\n" + table([
    ["experts", show(m.experts) + (m.expert_size ? ` (${m.expert_size} neurons each)` : "")],
    ["top_k", show(m.top_k)],
    ["router", show(m.router)],
    ["router layers", m.router_layers.length ? m.router_layers.join(", ") : "(none)"],
  ]);
}

/** Metadata entries ssd does not read, long values cut; null when there are none. */
function otherMetadataSection(r: InspectReport): string | null {
  const other = Object.entries(r.other_metadata);
  if (other.length === 0) return null;
  return "Other metadata\n" +
    table(other.map(([k, v]) => [k, v.length > 80 ? `${v.slice(0, 77)}...` : v]));
}

/** The human-readable form of `ssd inspect`: its sections, blank-line separated. */
export function formatInspect(r: InspectReport): string {
  return [
    fileSection(r),
    modelSection(r),
    mismatchSection(r),
    tensorSection(r),
    optimizerSection(r),
    trainSection(r),
    moeSection(r),
    otherMetadataSection(r),
  ].filter((s) => s !== null).join("\n\n");
}
