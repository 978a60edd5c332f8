/**
 * The `ssd bench --json` document: its type, its writer and the tolerant
 * reader `ssd report` uses. The bench command owns the format; readers
 * import it from here.
 *
 * Contract (keys in this order; numbers are plain JSON numbers):
 *
 * - `checkpoint`: the file benched, as given; `experts`: E of the MoE view,
 *   null when only dense was benched; `moefied`: true when `--experts`
 *   MoE-fied a dense checkpoint in memory;
 * - `model`: `{ d_model, n_layer, n_head, d_ff, ctx, vocab }`;
 * - `prompt_len`, `gen`: prompt tokens per sequence, timed decode steps;
 * - `device`: the adapter's name;
 * - `rows`: dense first, then the MoE view at each k ascending, each
 *   `{ mode: "dense" | "moe", top_k (null for dense), ffn_flops_per_token,
 *   val_loss (nats/token), val_bpb, prefill: { batch, tokens_per_s, ms,
 *   ffn_share }, decode: [{ batch, tokens_per_s, ms_per_token,
 *   ffn_ms_per_token, ffn_share }] }`, the `ffn_*` fields null where the
 *   adapter has no timestamp queries.
 *
 * The reader needs only `rows` with `mode` and `top_k`, and a dense row;
 * every other row field may be missing (older or hand-written files), and
 * reads as null or an empty list.
 */
import { ConfigError } from "../../core/errors.ts";
import { Fields, show } from "../json_fields.ts";

/** The prefill regime of one row. */
export interface PrefillResult {
  /** Sequences per forward. */
  batch: number;
  /** Prompt tokens per second. */
  tokens_per_s: number;
  /** Wall ms per forward. */
  ms: number;
  /** FFN share of the forward's GPU time (null without timestamp queries). */
  ffn_share: number | null;
}

/** The decode regime of one row at one batch. */
export interface DecodeResult {
  /** Sequences decoded together. */
  batch: number;
  /** Generated tokens per second, all sequences counted. */
  tokens_per_s: number;
  /** Wall ms per decode step (one token for each sequence). */
  ms_per_token: number;
  /** GPU ms per step in FFN kernels (null without timestamp queries). */
  ffn_ms_per_token: number | null;
  /** FFN share of the steps' GPU time (null without timestamp queries). */
  ffn_share: number | null;
}

/** One row: dense, or the MoE view at one k. */
export interface BenchRow {
  /** "dense" or "moe". */
  mode: "dense" | "moe";
  /** Experts per token; null for dense. */
  top_k: number | null;
  /** Forward FFN FLOPs per token, all layers, router included. */
  ffn_flops_per_token: number;
  /** Validation loss, nats per token. */
  val_loss: number;
  /** Validation bits per byte. */
  val_bpb: number;
  /** Prefill throughput. */
  prefill: PrefillResult;
  /** Decode speed at batch 1 and each --batch. */
  decode: DecodeResult[];
}

/** The `--json` document (see the module comment). */
export interface BenchJson {
  /** The checkpoint benched. */
  checkpoint: string;
  /** E of the MoE view, null when only dense was benched. */
  experts: number | null;
  /** True when --experts MoE-fied a dense checkpoint in memory. */
  moefied: boolean;
  /** Model shape. */
  model: {
    d_model: number;
    n_layer: number;
    n_head: number;
    d_ff: number;
    ctx: number;
    vocab: number;
  };
  /** Prompt tokens per sequence. */
  prompt_len: number;
  /** Timed decode steps. */
  gen: number;
  /** The adapter's name. */
  device: string;
  /** Dense first, then each k. */
  rows: BenchRow[];
}

/** The `--json` document of a report: exactly the contract's keys, in order. */
export function benchJson(r: BenchJson): BenchJson {
  return {
    checkpoint: r.checkpoint,
    experts: r.experts,
    moefied: r.moefied,
    model: { ...r.model },
    prompt_len: r.prompt_len,
    gen: r.gen,
    device: r.device,
    rows: r.rows.map((row) => ({
      mode: row.mode,
      top_k: row.top_k,
      ffn_flops_per_token: row.ffn_flops_per_token,
      val_loss: row.val_loss,
      val_bpb: row.val_bpb,
      prefill: { ...row.prefill },
      decode: row.decode.map((d) => ({ ...d })),
    })),
  };
}

/** A row as read back: what a reader can do without reads as null (or no decode entries). */
export interface BenchRowRead {
  /** As `BenchRow.mode`. */
  mode: BenchRow["mode"];
  /** As `BenchRow.top_k`. */
  top_k: number | null;
  /** As `BenchRow.ffn_flops_per_token`, null when missing. */
  ffn_flops_per_token: number | null;
  /** As `BenchRow.val_loss`, null when missing. */
  val_loss: number | null;
  /** `prefill.tokens_per_s`, null when missing. */
  prefill_tokens_per_s: number | null;
  /** As `BenchRow.decode`, with `ms_per_token` null when missing. */
  decode: (Pick<DecodeResult, "batch" | "tokens_per_s"> & { ms_per_token: number | null })[];
}

/** A bench document as read back. */
export interface BenchJsonRead {
  /** As `BenchJson.checkpoint`, null when missing. */
  checkpoint: string | null;
  /** As `BenchJson.experts`. */
  experts: number | null;
  /** Rows, dense first. */
  rows: BenchRowRead[];
}

/**
 * Reads an `ssd bench --json` document, checked field by field.
 *
 * @param file the JSON file
 * @throws ConfigError naming the file and the bad field
 */
export async function readBenchJson(file: string): Promise<BenchJsonRead> {
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
    readRow(raw, `Bench file ${file} rows[${i}]`)
  );
  if (!rows.some((r) => r.mode === "dense")) {
    throw new ConfigError(`Bench file ${file} has no dense row: the dense reference is needed`);
  }
  return {
    checkpoint: typeof top.checkpoint === "string" ? top.checkpoint : null,
    experts: new Fields(`Bench file ${file}`).int(top, "experts", { nullable: true }),
    rows,
  };
}

function readRow(raw: unknown, where: string): BenchRowRead {
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
