/**
 * `PartitionMonitor.read` on a small real model (GPU): the probe readings
 * the switch rules use. Two checks of an unchanged model find the same
 * partition (similarity 1) and the same oracle sets (overlap 1); the first
 * check has nothing to compare with (null); coverage is a share in (0, 1],
 * and 1 at k = E; the guard's gap is 0 at k = E (the MoE with every expert is
 * the dense model) and the dense-phase check applies its partition without
 * changing the dense loss; a sparse-phase check keeps the reference.
 */
import assert from "node:assert/strict";
import type { GPTConfig } from "../../../core/nn/config.ts";
import { GPT } from "../../../core/nn/gpt.ts";
import { evaluateTokens } from "../../../core/nn/token_nll.ts";
import { Rng } from "../../../core/rng.ts";
import { PartitionMonitor } from "../../../pipelines/train/monitor.ts";
import { makeOptimizer } from "../../../pipelines/train/step.ts";
import { DEFAULT_OPTIMIZER_CONFIG } from "../../../pipelines/train/config.ts";
import { identityLayout } from "../../../pipelines/train/switch.ts";
import { setupGpu } from "../../_helpers.ts";

Deno.env.set("SSD_NO_AUTOTUNE", "1");
await setupGpu();

const CFG: GPTConfig = {
  vocab: 256,
  ctx: 16,
  d_model: 16,
  n_layer: 2,
  n_head: 2,
  d_ff: 32,
  bias: true,
  activation: "relu",
};
const E = 4;
const ALL = ["similarity", "overlap", "coverage", "moe_gap"] as const;

function setup(topK: number) {
  const model = GPT.init(CFG, new Rng(3), identityLayout(CFG, E, topK));
  const optimizer = makeOptimizer(model, DEFAULT_OPTIMIZER_CONFIG);
  const rng = new Rng(9);
  const probe = Uint8Array.from({ length: 257 }, () => 97 + rng.int(26));
  const monitor = new PartitionMonitor({ experts: E, top_k: topK, seed: 1, distance: "host" });
  return { model, optimizer, monitor, ctx: { optimizer, probe, evalBatch: 8 } };
}

Deno.test("PartitionMonitor.read: an unchanged model reads as stable, with every reading in range", async () => {
  const { model, optimizer, monitor, ctx } = setup(1);
  try {
    const first = await monitor.read(model, "dense", ALL, ctx);
    assert.equal(first.similarity, null);
    assert.equal(first.overlap, null);
    assert.ok(first.coverage! > 0 && first.coverage! <= 1, `coverage ${first.coverage}`);
    assert.ok(Number.isFinite(first.moe_gap!) && first.moe_gap !== 0, `gap ${first.moe_gap}`);
    const second = await monitor.read(model, "dense", ALL, ctx);
    assert.equal(second.similarity, 1);
    assert.equal(second.overlap, 1);
    assert.ok(Math.abs(second.coverage! - first.coverage!) < 1e-9);
    // Only what is asked is measured.
    const cheap = await monitor.read(model, "dense", ["similarity"], ctx);
    assert.deepEqual([cheap.overlap, cheap.coverage, cheap.moe_gap], [null, null, null]);
  } finally {
    optimizer.dispose();
    model.release();
  }
});

Deno.test("PartitionMonitor.read: at k = E the guard's gap is 0 and coverage 1; the dense loss is kept", async () => {
  const { model, optimizer, monitor, ctx } = setup(E);
  try {
    const before = await evaluateTokens(model, ctx.probe, 8);
    const r = await monitor.read(model, "dense", ALL, ctx);
    assert.ok(Math.abs(r.moe_gap!) < 1e-5, `gap ${r.moe_gap}`);
    assert.ok(Math.abs(r.coverage! - 1) < 1e-9, `coverage ${r.coverage}`);
    // The check applied its partition (a neuron permutation): the dense model is the same function.
    const after = await evaluateTokens(model, ctx.probe, 8);
    assert.ok(Math.abs(after.nll - before.nll) < 1e-5, `${before.nll} vs ${after.nll}`);
    const ref = monitor.labels!.map((l) => Array.from(l));
    await monitor.read(model, "sparse", ["similarity", "moe_gap"], ctx);
    assert.deepEqual(monitor.labels!.map((l) => Array.from(l)), ref);
  } finally {
    optimizer.dispose();
    model.release();
  }
});
