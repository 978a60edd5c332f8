import { GPT } from "../../../core/nn/gpt.ts";
import { type GPTConfig, paramCount, paramShapes } from "../../../core/nn/config.ts";
import { Rng } from "../../../core/rng.ts";
import { tidyAsync } from "../../../core/scope.ts";
import { backward } from "../../../core/tape.ts";
import { readAll, tensor } from "../../../core/tensor.ts";
import { assertAllClose, setupGpu } from "../../_helpers.ts";
import { refLossAndGrads } from "../../_ref/gpt_ref.ts";
import assert from "node:assert/strict";

await setupGpu();

const TINY: GPTConfig = {
  vocab: 256,
  ctx: 8,
  d_model: 12,
  n_layer: 2,
  n_head: 3,
  d_ff: 20,
  bias: true,
  activation: "relu",
};

async function parity(config: GPTConfig, B: number, T: number, seed: number) {
  const model = GPT.init(config, new Rng(seed));
  // Larger-than-GPT-2 weights make every path (attention, LN, FFN) matter in the loss.
  const rng = new Rng(seed + 1);
  const host = new Map<string, { data: Float64Array; shape: number[] }>();
  const params = [...model.params.entries()];
  const init = await readAll(params.map(([, t]) => t));
  params.forEach(([name, t], i) => {
    const jitter = name.includes("ln_") ? 0.1 : 0.3;
    const data = Float64Array.from(init[i], (v) => Math.fround(v + jitter * rng.normal()));
    host.set(name, { data, shape: [...t.shape] });
  });
  const x = Array.from({ length: B * T }, () => rng.int(config.vocab));
  const y = Array.from({ length: B * T }, () => rng.int(config.vocab));
  const ref = refLossAndGrads(config, host, x, y, B, T);

  await tidyAsync(async () => {
    for (const [name, p] of model.params) {
      const fresh = tensor(host.get(name)!.data, p.shape);
      // Copy the jittered values into the parameter in place (recorded copy).
      const { gpu } = await import("../../../gpu/runtime.ts");
      gpu().recorder.copy(fresh.buffer, 0, p.buffer, 0, p.bytes);
    }
    const out = model.forward(
      tensor(x, [B, T], { dtype: "u32" }),
      tensor(y, [B, T], { dtype: "u32" }),
    );
    backward(out.loss!);
    const [loss] = await readAll([out.loss!]);
    // f32 on the GPU vs f64 reference: a loss of ~5.5 agrees to ~1e-5 relative.
    assertAllClose(loss, [ref.loss], { atol: 1e-4, rtol: 1e-5 }, "loss");
    const names = [...model.params.keys()];
    const grads = await readAll(names.map((n) => model.params.get(n)!.grad!));
    names.forEach((n, i) => {
      // Gradients are sums of many f32 products: atol 2e-5 on values of order 1e-2..1e-1.
      assertAllClose(grads[i], ref.grads.get(n)!, { atol: 2e-5, rtol: 2e-3 }, `grad ${n}`);
    });
    for (const p of model.params.values()) {
      p.grad?.release();
      p.grad = null;
    }
  });
  model.release();
}

Deno.test("GPT loss and every parameter gradient match the float64 reference (relu)", async () => {
  await parity(TINY, 2, 7, 3);
});

Deno.test("GPT loss and gradients match the reference with gelu and T = ctx", async () => {
  await parity({ ...TINY, activation: "gelu", n_head: 2, d_model: 8 }, 3, 8, 5);
});

Deno.test("paramShapes() uses nanoGPT names and paramCount() counts the tied embedding once", () => {
  const shapes = paramShapes(TINY);
  assert.deepEqual(shapes.get("transformer.h.1.mlp.c_fc.weight"), [20, 12]);
  assert.deepEqual(shapes.get("transformer.h.0.attn.c_attn.weight"), [36, 12]);
  assert.equal(shapes.has("lm_head.weight"), false);
  const C = 12, F = 20, L = 2;
  const perLayer = 2 * C + 3 * C * C + 3 * C + C * C + C + 2 * C + F * C + F + C * F + C;
  assert.equal(paramCount(TINY), 256 * C + 8 * C + L * perLayer + 2 * C);
});

Deno.test("GPT.init() is deterministic for a seed and follows GPT-2 init statistics", async () => {
  const cfg: GPTConfig = { ...TINY, d_model: 64, d_ff: 256, n_head: 4 };
  const a = GPT.init(cfg, new Rng(7));
  const b = GPT.init(cfg, new Rng(7));
  const names = [
    "transformer.wte.weight",
    "transformer.h.1.mlp.c_proj.weight",
    "transformer.h.0.ln_1.weight",
  ];
  const [wa, pa, la, wb] = await readAll([
    ...names.map((n) => a.p(n)),
    b.p("transformer.wte.weight"),
  ]);
  assert.deepEqual(wa, wb);
  const std = (v: ArrayLike<number>) => {
    let s = 0;
    for (let i = 0; i < v.length; i++) s += v[i] * v[i];
    return Math.sqrt(s / v.length);
  };
  assert.ok(Math.abs(std(wa) - 0.02) < 0.001, `wte std ${std(wa)}`);
  assert.ok(Math.abs(std(pa) - 0.02 / Math.sqrt(4)) < 0.001, `c_proj std ${std(pa)}`);
  assert.ok(Array.from(la).every((v) => v === 1));
  a.release();
  b.release();
});

Deno.test("GPT.forward() rejects sequences longer than ctx and non-u32 tokens", () => {
  const model = GPT.init(TINY, new Rng(1));
  const long = tensor(new Array(2 * 9).fill(1), [2, 9], { dtype: "u32" });
  assert.throws(() => model.forward(long), /exceeds the context 8/);
  const f = tensor([1, 2], [1, 2]);
  assert.throws(() => model.forward(f), /tokens must be u32/);
  long.release();
  f.release();
  model.release();
});
