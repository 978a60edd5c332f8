/**
 * `pipelines/train/accounting.ts`: FFN FLOPs on a hand example (exact
 * integers) and against the default config's dense formula; accumulator
 * totals across a resume; the summary of saved state equals the live one.
 */
import assert from "node:assert/strict";
import { DEFAULT_TRAIN_CONFIG } from "../../../pipelines/train/config.ts";
import {
  ffnFlops,
  RunAccounting,
  summarizeAccounting,
} from "../../../pipelines/train/accounting.ts";

Deno.test("ffnFlops: hand example and train.ts's dense formula", () => {
  const shape = { tokens: 8, d_model: 4, d_ff: 16, n_layer: 2, experts: 4, top_k: 1 };
  // Dense: 3·2·2 · 8·4·16·2 = 12 · 1024.
  assert.equal(ffnFlops({ ...shape, phase: "dense" }), 12288);
  // Sparse: 12288 · 1/4 + router 3·2 · 8·4·4·2 = 3072 + 1536.
  assert.equal(ffnFlops({ ...shape, phase: "sparse" }), 4608);
  assert.equal(ffnFlops({ ...shape, top_k: 4, phase: "sparse" }), 12288 + 1536);
  // The default config's dense step: 12 · tokens · d · d_ff · layers.
  const c = DEFAULT_TRAIN_CONFIG;
  const dense = ffnFlops({
    tokens: c.batch_size * c.ctx,
    d_model: c.d_model,
    d_ff: c.d_ff,
    n_layer: c.n_layer,
    experts: 16,
    top_k: 4,
    phase: "dense",
  });
  assert.equal(dense, 12 * 8 * 64 * 128 * 512 * 3);
});

Deno.test("RunAccounting: totals, shares, overheads, and resume", () => {
  const shape = { tokens: 8, d_model: 4, d_ff: 16, n_layer: 2, experts: 4, top_k: 1 };
  const a = new RunAccounting(shape);
  assert.deepEqual(a.addStep("dense", 10), { ffn_flops: 12288, ffn_flops_dense: 12288 });
  a.addStep("dense", 10);
  assert.deepEqual(a.addStep("sparse", 5), { ffn_flops: 4608, ffn_flops_dense: 12288 });
  const b = new RunAccounting(shape, JSON.parse(JSON.stringify(a.state())));
  b.addStep("sparse", 5);
  b.addStep("dense", 10);
  b.addOverhead("monitor", 4);
  b.addOverhead("monitor", 2);
  b.addOverhead("moefy", 1);
  const s = b.summary();
  assert.equal(s.steps, 5);
  assert.equal(s.ffn_flops, 3 * 12288 + 2 * 4608);
  assert.equal(s.ffn_flops_dense, 5 * 12288);
  assert.equal(s.flops_ratio, 0.75);
  assert.deepEqual(s.dense, { steps: 3, share: 0.6, ffn_flops: 3 * 12288, wall_s: 0.03 });
  assert.deepEqual(s.sparse, { steps: 2, share: 0.4, ffn_flops: 2 * 4608, wall_s: 0.01 });
  assert.deepEqual(s.overhead_s, { monitor: 0.006, moefy: 0.001 });
  assert.ok(Math.abs(s.step_s - 0.04) < 1e-12);
  assert.ok(Math.abs(s.wall_s - 0.047) < 1e-12);
  // The copy is independent of the original.
  assert.equal(a.summary().steps, 3);
  assert.equal(new RunAccounting(shape).summary().flops_ratio, 1);
  assert.throws(() => new RunAccounting({ ...shape, top_k: 5 }), /--top-k/);
  assert.throws(() => new RunAccounting({ ...shape, tokens: 0 }), /--tokens/);
  // A reader of saved state (the report) gets the same totals.
  assert.deepEqual(summarizeAccounting(JSON.parse(JSON.stringify(b.state()))), s);
});
