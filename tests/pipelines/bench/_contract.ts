/**
 * The keys of an `ssd bench --json` document, in order, as the bench
 * module's contract fixes them: one check for the pipeline's `benchJson`
 * and the CLI's output.
 */
import assert from "node:assert/strict";

/** Asserts the document's keys, its model's, and every row's (prefill and decode too). */
export function assertBenchContract(doc: Record<string, unknown>): void {
  assert.deepEqual(Object.keys(doc), [
    "checkpoint",
    "experts",
    "moefied",
    "model",
    "prompt_len",
    "gen",
    "device",
    "rows",
  ]);
  assert.deepEqual(Object.keys(doc.model as object), [
    "d_model",
    "n_layer",
    "n_head",
    "d_ff",
    "ctx",
    "vocab",
  ]);
  for (const row of doc.rows as Record<string, unknown>[]) {
    assert.deepEqual(Object.keys(row), [
      "mode",
      "top_k",
      "ffn_flops_per_token",
      "val_loss",
      "val_bpb",
      "prefill",
      "decode",
    ]);
    assert.deepEqual(Object.keys(row.prefill as object), [
      "batch",
      "tokens_per_s",
      "ms",
      "ffn_share",
    ]);
    for (const d of row.decode as object[]) {
      assert.deepEqual(Object.keys(d), [
        "batch",
        "tokens_per_s",
        "ms_per_token",
        "ffn_ms_per_token",
        "ffn_share",
      ]);
    }
  }
}
