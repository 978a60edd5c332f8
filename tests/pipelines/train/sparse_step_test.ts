/**
 * The sparse MoE training step at the model level: with all
 * experts it is the dense step; with fewer, experts that received no token
 * keep their weights and AdamW moments, and the schedule resumes mid-phase.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { GPTConfig } from "../../../core/nn/config.ts";
import { GPT } from "../../../core/nn/gpt.ts";
import { AdamW } from "../../../core/optim/adamw.ts";
import { Rng } from "../../../core/rng.ts";
import { tidyAsync } from "../../../core/scope.ts";
import { backward } from "../../../core/tape.ts";
import { readAll, type Tensor, tensor } from "../../../core/tensor.ts";
import { identityLayout } from "../../../pipelines/train/switch.ts";
import { resolveTrainConfig } from "../../../pipelines/train/config.ts";
import { runTrain } from "../../../pipelines/train/run.ts";
import { assertAllClose, setupGpu } from "../../_helpers.ts";

Deno.env.set("SSD_NO_AUTOTUNE", "1");
await setupGpu();

const CFG: GPTConfig = {
  vocab: 256,
  ctx: 8,
  d_model: 16,
  n_layer: 2,
  n_head: 2,
  d_ff: 32,
  bias: true,
  activation: "relu",
};
const B = 3, T = 8, E = 4;

function batch(seed: number): [number[], number[]] {
  const rng = new Rng(seed);
  return [
    Array.from({ length: B * T }, () => rng.int(256)),
    Array.from({ length: B * T }, () => rng.int(256)),
  ];
}

async function lossAndGrads(model: GPT, opts: { topK?: number; forceSparse?: boolean }) {
  const [x, y] = batch(5);
  return await tidyAsync(async () => {
    const out = model.forward(
      tensor(x, [B, T], { dtype: "u32" }),
      tensor(y, [B, T], { dtype: "u32" }),
      opts,
    );
    backward(out.loss!);
    const names = [...model.params.keys()].filter((n) => !n.endsWith("router.weight"));
    const data = await readAll([out.loss!, ...names.map((n) => model.p(n).grad!)]);
    for (const p of model.params.values()) {
      p.grad?.release();
      p.grad = null;
    }
    return { loss: data[0][0], grads: new Map(names.map((n, i) => [n, data[i + 1]])) };
  });
}

Deno.test("a sparse step with k = E gives the dense step's loss and gradients", async () => {
  const model = GPT.init(CFG, new Rng(1), identityLayout(CFG, E, E));
  // Non-zero routers so that the routing really sorts tokens by expert.
  for (let l = 0; l < CFG.n_layer; l++) {
    const r = model.p(`transformer.h.${l}.mlp.router.weight`);
    const fresh = tensor(new Rng(9 + l).normalArray(r.size, 1), r.shape);
    const { gpu } = await import("../../../gpu/runtime.ts");
    gpu().recorder.copy(fresh.buffer, 0, r.buffer, 0, r.bytes);
    fresh.release();
  }
  const dense = await lossAndGrads(model, {});
  const sparse = await lossAndGrads(model, { topK: E, forceSparse: true });
  // Same math, other summation order (experts grouped): f32 rounding only.
  assertAllClose([sparse.loss], [dense.loss], { atol: 1e-6, rtol: 1e-6 }, "loss");
  for (const [name, g] of dense.grads) {
    assertAllClose(sparse.grads.get(name)!, g, { atol: 1e-6, rtol: 1e-4 }, `grad ${name}`);
  }
  model.release();
});

Deno.test("a sparse step with k < E leaves experts without tokens and their moments untouched", async () => {
  // Zero routers tie every score; ties go to the lower expert, so experts 2, 3 get no token.
  const k = 2;
  const model = GPT.init(CFG, new Rng(2), identityLayout(CFG, E, k));
  const params = [...model.params.values()];
  const opt = new AdamW(params, { lr: 1e-2 });
  const watch = (l: number) => [
    model.p(`transformer.h.${l}.mlp.c_fc.weight`),
    model.p(`transformer.h.${l}.mlp.c_fc.bias`),
    model.p(`transformer.h.${l}.mlp.c_proj.weight`),
  ];
  const before = await readAll(watch(0));
  const [x, y] = batch(7);
  let counts: Tensor[] = [];
  await tidyAsync(async () => {
    const collected: Tensor[] = [];
    const out = model.forward(
      tensor(x, [B, T], { dtype: "u32" }),
      tensor(y, [B, T], { dtype: "u32" }),
      { topK: k, onExpertCounts: (l, c) => (collected[l] = c) },
    );
    backward(out.loss!);
    const s = CFG.d_ff / E;
    const masks = new Map();
    collected.forEach((c, l) => {
      const [fc, fcB, proj] = watch(l);
      masks.set(fc, { counts: c.buffer, modulo: CFG.d_ff * CFG.d_model, divisor: s * CFG.d_model });
      masks.set(fcB, { counts: c.buffer, modulo: CFG.d_ff, divisor: s });
      masks.set(proj, { counts: c.buffer, modulo: CFG.d_ff, divisor: s });
    });
    opt.step(undefined, undefined, masks);
    opt.zeroGrad();
    counts = collected;
    const loads = await readAll(collected);
    assert.deepEqual(Array.from(loads[0]), [B * T, B * T, 0, 0]);
  });
  assert.ok(counts.every((c) => c.released), "counts are released with the step's scope");
  const [fc, fcB, proj] = await readAll(watch(0));
  const { m } = opt.moments(watch(0)[0]);
  const [mFc] = await readAll([m]);
  const s = CFG.d_ff / E, C = CFG.d_model;
  for (let row = 0; row < CFG.d_ff; row++) {
    const idle = Math.floor(row / s) >= k;
    for (let c = 0; c < C; c++) {
      const i = row * C + c;
      if (idle) {
        assert.equal(fc[i], before[0][i], `idle c_fc[${row}, ${c}] changed`);
        assert.equal(mFc[i], 0, `idle moment changed`);
      }
    }
    if (idle) assert.equal(fcB[row], before[1][row]);
    else assert.notEqual(fcB[row], before[1][row], `active bias ${row} not updated`);
  }
  for (let c = 0; c < C; c++) {
    for (let j = k * s; j < CFG.d_ff; j++) {
      assert.equal(proj[c * CFG.d_ff + j], before[2][c * CFG.d_ff + j]);
    }
  }
  opt.dispose();
  model.release();
});

/** Trains `base` whole and stopped after `stopAt` then resumed; both runs' step lines. */
async function fullAndResumed(dir: string, base: Record<string, unknown>, stopAt: number) {
  const full = await runTrain(await resolveTrainConfig({ ...base, out: join(dir, "full") }));
  const partCfg = await resolveTrainConfig({ ...base, out: join(dir, "part") });
  const stop = new AbortController();
  await runTrain(partCfg, {
    signal: stop.signal,
    hooks: { onStep: (m) => m.step === stopAt && stop.abort() },
  });
  const resumed = await runTrain(partCfg, { resume: join(dir, "part") });
  const read = async (d: string) =>
    (await Deno.readTextFile(join(dir, d, "metrics.jsonl"))).trim().split("\n").map((l) =>
      JSON.parse(l)
    )
      .filter((m) => m.loss !== undefined);
  return { full, resumed, a: await read("full"), b: await read("part") };
}

function assertSameSteps(a: { phase: string; loss: number }[], b: typeof a, steps: number) {
  assert.equal(b.length, steps);
  for (let i = 0; i < steps; i++) {
    assert.equal(b[i].phase, a[i].phase, `phase of step ${i + 1}`);
    assert.ok(
      Math.abs(a[i].loss - b[i].loss) <= 1e-6,
      `step ${i + 1}: ${a[i].loss} vs ${b[i].loss}`,
    );
  }
}

const RESUME_BASE = {
  preset: "tiny",
  steps: 40,
  schedule: "ssd",
  monitor_every: 5,
  patience: 1,
  switch_rule: "threshold",
  stable_threshold: 0,
  dense_every: 0,
  ending: "dense",
  sparse_steps: 15,
  experts: 8,
  top_k: 2,
  eval_every: 0,
  save_every: 0,
  eval_tokens: 256,
};

Deno.test("ssd train resumed in the middle of a sparse phase continues it exactly", async () => {
  const dir = await Deno.makeTempDir();
  const data = join(dir, "data.txt");
  await Deno.writeTextFile(data, (await Deno.readTextFile("README.md")).repeat(2));
  // No drift ends a phase early here, so the phases are the plain plan's.
  const base = { ...RESUME_BASE, data, drift_threshold: 0 };
  const { full, resumed, a, b } = await fullAndResumed(dir, base, 17);
  // The first check (step 5) is the baseline; stable from the next one (10): sparse for 15
  // steps; back to dense at 25; the structure is formed, so the check at 30 returns to
  // sparse; cut at 36 by the 10% tail.
  assert.deepEqual(full.switches.map((e) => [e.step, e.to, e.reason]), [
    [10, "sparse", "stable"],
    [25, "dense", "length"],
    [30, "sparse", "stable"],
    [36, "dense", "final"],
  ]);
  assert.deepEqual(resumed.switches, full.switches);
  assertSameSteps(a, b, 40);
  assert.ok(full.accounting.flops_ratio < 1);
  assert.ok(full.val_moe !== null && Number.isFinite(full.val_moe.nll));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("ssd train under the guard rule with a mixed ending resumes mid-dense exactly", async () => {
  const dir = await Deno.makeTempDir();
  const data = join(dir, "data.txt");
  await Deno.writeTextFile(data, (await Deno.readTextFile("README.md")).repeat(2));
  // The guard repartitions the model at every dense check and evaluates the probe; a tolerance
  // of 1 lets it switch, a drift threshold of 1 ends each sparse phase at its first check.
  const base = {
    ...RESUME_BASE,
    data,
    switch_rule: "guard",
    guard_tolerance: 1,
    drift_threshold: 1,
    ending: "mixed",
    probe_tokens: 512,
  };
  const { full, resumed, a, b } = await fullAndResumed(dir, base, 22);
  const reasons = full.switches.map((e) => e.reason);
  assert.ok(reasons.includes("drift") && reasons.includes("stable"), reasons.join(","));
  // The tail, steps 37..40 (metrics count steps done), alternates sparse and dense.
  assert.deepEqual(a.slice(36).map((m) => m.phase), ["sparse", "dense", "sparse", "dense"]);
  assert.ok(a.some((m) => m.moe_gap !== undefined), "the guard's reading is logged");
  assert.deepEqual(resumed.switches, full.switches);
  assertSameSteps(a, b, 40);
  await Deno.remove(dir, { recursive: true });
});
