/**
 * Reading `ssd bench --json` documents for `ssd report`: rows of dense and
 * MoE measurements (val loss, prefill and decode tokens/s per k), checked
 * field by field so that a bad file fails with one line naming it.
 */
import { basename, resolve } from "node:path";
import { ConfigError } from "../../core/errors.ts";
import { Fields, show, uniqueNames } from "./_util.ts";

/** One decode measurement of a bench row. */
export interface BenchDecode {
  /** Sequences decoded together. */
  batch: number;
  /** Tokens per second over all sequences. */
  tokens_per_s: number;
  /** Wall time per generated position. */
  ms_per_token: number | null;
}

/** One row of an `ssd bench --json` document. */
export interface BenchRow {
  /** Dense reference or MoE at `top_k`. */
  mode: "dense" | "moe";
  /** Experts per token (null for dense). */
  top_k: number | null;
  /** Forward FFN FLOPs per token. */
  ffn_flops_per_token: number | null;
  /** Validation loss at this k. */
  val_loss: number | null;
  /** Prefill throughput. */
  prefill_tokens_per_s: number | null;
  /** Decode measurements by batch. */
  decode: BenchDecode[];
}

/** One bench file, read and checked. */
export interface BenchData {
  /** The file as given. */
  file: string;
  /** Legend label, unique among the report's bench files. */
  label: string;
  /** Checkpoint benchmarked. */
  checkpoint: string | null;
  /** Experts of the MoE view. */
  experts: number | null;
  /** Rows, dense first. */
  rows: BenchRow[];
}

/**
 * Reads an `ssd bench --json` document (format: notes on the bench command):
 * `rows` of dense and MoE measurements, dense first.
 *
 * @param file the JSON file
 * @throws ConfigError naming the file and the bad field
 */
export async function readBench(file: string): Promise<BenchData> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch {
    throw new ConfigError(`Bench file ${file} not found: give files written by ssd bench --json`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(
      `Bench file ${file} is not valid JSON (${(e as Error).message.split("\n")[0]}): ` +
        `give the output of ssd bench --json`,
    );
  }
  const top = new Fields(`Bench file ${file}`).object(parsed, "the document");
  if (!Array.isArray(top.rows) || top.rows.length === 0) {
    new Fields(`Bench file ${file}`).fail(
      `"rows" is ${show(top.rows)}, expected a non-empty array of measurements`,
    );
  }
  const rows = (top.rows as unknown[]).map((raw, i) =>
    benchRow(raw, `Bench file ${file} rows[${i}]`)
  );
  if (!rows.some((r) => r.mode === "dense")) {
    throw new ConfigError(`Bench file ${file} has no dense row: the dense reference is needed`);
  }
  const f = new Fields(`Bench file ${file}`);
  return {
    file,
    label: basename(file),
    checkpoint: typeof top.checkpoint === "string" ? top.checkpoint : null,
    experts: f.int(top, "experts", { nullable: true }),
    rows,
  };
}

function benchRow(raw: unknown, where: string): BenchRow {
  const f = new Fields(where);
  const o = f.object(raw, "the row");
  const mode = f.oneOf(o, "mode", ["dense", "moe"] as const);
  const topK = f.int(o, "top_k", { nullable: true });
  if (mode === "moe" && (topK === null || topK < 1)) {
    f.fail(`"top_k" is ${show(o.top_k)}, expected a positive integer for an MoE row`);
  }
  const prefill = o.prefill === undefined || o.prefill === null
    ? null
    : f.object(o.prefill, `"prefill"`);
  if (o.decode !== undefined && !Array.isArray(o.decode)) {
    f.fail(`"decode" is ${show(o.decode)}, expected an array`);
  }
  const decode = ((o.decode ?? []) as unknown[]).map((d, j) => {
    const g = new Fields(`${where}.decode[${j}]`);
    const dj = g.object(d, "the entry");
    return {
      batch: g.int(dj, "batch", { required: true })!,
      tokens_per_s: g.num(dj, "tokens_per_s", { required: true })!,
      ms_per_token: g.num(dj, "ms_per_token", { nullable: true }),
    };
  });
  return {
    mode,
    top_k: mode === "dense" ? null : topK,
    ffn_flops_per_token: f.num(o, "ffn_flops_per_token", { nullable: true }),
    val_loss: f.num(o, "val_loss", { nullable: true }),
    prefill_tokens_per_s: prefill
      ? new Fields(`${where}.prefill`).num(prefill, "tokens_per_s", { required: true })
      : null,
    decode,
  };
}

/** Labels bench files by their shortest distinct path, without `.json`. */
export function labelBenches(benches: BenchData[]): void {
  const names = uniqueNames(benches.map((b) => resolve(b.file)), ".json");
  benches.forEach((b, i) => (b.label = names[i].replace(/\.json$/, "")));
}
