/**
 * `ssd generate`'s pipeline in process: determinism per seed, greedy
 * decoding against argmax of a direct forward (context cropped to ctx), no
 * pool growth while streaming, and bad input. The sampler itself (greedy
 * ties, top-k support, the temperature-scaled distribution) runs on the GPU
 * and is tested in tests/core/nn/decode_test.ts.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { CheckpointError, ConfigError } from "../../core/errors.ts";
import { loadGPT } from "../../core/nn/gpt_checkpoint.ts";
import { tidyAsync } from "../../core/scope.ts";
import { noGrad } from "../../core/tape.ts";
import { tensor } from "../../core/tensor.ts";
import { encode } from "../../core/tokenizer.ts";
import { type GenerateConfig, generateTokens, runGenerate } from "../../pipelines/generate.ts";
import { setupGpu } from "../_helpers.ts";
import { TINY_CONFIG, truncateCopy } from "./_tiny_checkpoint.ts";
import { scratchTiny } from "./_scratch.ts";

// Tests never pay for a kernel trial (the pipelines run one when autotune is on).
Deno.env.set("SSD_NO_AUTOTUNE", "1");
const g = await setupGpu();
const { dir, ckpt } = await scratchTiny("ssd_generate_", { seed: 3 });

function config(over: Partial<GenerateConfig> = {}): GenerateConfig {
  return {
    checkpoint: ckpt,
    prompt: "the cat",
    tokens: 12,
    temperature: 1,
    sample_top_k: 0,
    seed: 5,
    ...over,
  };
}

async function collect(stream: AsyncGenerator<number>): Promise<number[]> {
  const out: number[] = [];
  for await (const t of stream) out.push(t);
  return out;
}

Deno.test("runGenerate(): the same seed gives the same tokens, another seed others", async () => {
  const a = await collect(runGenerate(config({ seed: 11, tokens: 24 })));
  const b = await collect(runGenerate(config({ seed: 11, tokens: 24 })));
  const c = await collect(runGenerate(config({ seed: 12, tokens: 24 })));
  assert.equal(a.length, 24);
  assert.ok(a.every((t) => Number.isInteger(t) && t >= 0 && t < 256));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

Deno.test("runGenerate(): temperature 0 equals argmax of a direct forward, context cropped", async () => {
  // A prompt longer than ctx (every step crops), and a short one (cached
  // steps until the window is full, then crops); more steps than ctx.
  const steps = 2 * TINY_CONFIG.ctx + 3;
  for (const prompt of ["a longer prompt than eight bytes", "xyz"]) {
    const got = await collect(runGenerate(config({ prompt, tokens: steps, temperature: 0 })));
    const { model } = await loadGPT(ckpt);
    try {
      const seq = Array.from(encode(prompt));
      const V = TINY_CONFIG.vocab;
      const want: number[] = [];
      for (let i = 0; i < steps; i++) {
        const ctx = seq.slice(-TINY_CONFIG.ctx);
        const T = ctx.length;
        // Read the whole (1, T, V) logits and take the last row on the host.
        const logits = await tidyAsync(() =>
          noGrad(() => model.forward(tensor(ctx, [1, T], { dtype: "u32" }))).logits.data()
        );
        const row = logits.subarray((T - 1) * V);
        let best = 0;
        for (let v = 1; v < V; v++) if (row[v] > row[best]) best = v;
        want.push(best);
        seq.push(best);
      }
      assert.deepEqual(got, want, prompt);
      assert.ok(new Set(want).size > 1, "the test model should not emit one byte forever");
    } finally {
      model.release();
    }
  }
});

Deno.test("generateTokens(): steps leave no live buffers behind", async () => {
  const { model } = await loadGPT(ckpt);
  try {
    // From the first step on, every forward has T = ctx, so nothing new is cached.
    const stream = generateTokens(model, { ...config(), prompt: "0123456789", tokens: 30 });
    const live: number[] = [];
    for await (const _ of stream) live.push(g.pool.stats().liveBuffers);
    assert.equal(live.length, 30);
    assert.ok(live.every((n) => n === live[0]), `live buffers per step: ${live.join(",")}`);
  } finally {
    model.release();
  }
});

Deno.test("runGenerate() releases the model when it ends, early or not", async () => {
  const before = g.pool.stats().liveBuffers;
  await collect(runGenerate(config({ tokens: 5 })));
  assert.equal(g.pool.stats().liveBuffers, before);
  for await (const _ of runGenerate(config({ tokens: 100 }))) break;
  assert.equal(g.pool.stats().liveBuffers, before, "consumer stopped after one token");
  assert.deepEqual(await collect(runGenerate(config({ tokens: 0 }))), []);
  assert.equal(g.pool.stats().liveBuffers, before);
});

Deno.test("runGenerate() rejects bad input with one clear error", async () => {
  const before = g.pool.stats().liveBuffers;
  const cases: [Partial<GenerateConfig>, RegExp][] = [
    [{ prompt: "" }, /--prompt is empty/],
    [{ temperature: -0.5 }, /--temperature must be a finite number >= 0/],
    [{ temperature: NaN }, /--temperature/],
    [{ sample_top_k: -1 }, /--sample-top-k must be a non-negative integer/],
    [{ sample_top_k: 257 }, /--sample-top-k 257 is larger than the model's vocab of 256/],
    [{ tokens: -3 }, /--tokens must be a non-negative integer/],
  ];
  for (const [over, re] of cases) {
    await assert.rejects(
      collect(runGenerate(config(over))),
      (e: Error) => e instanceof ConfigError && re.test(e.message),
      JSON.stringify(over),
    );
  }
  await assert.rejects(
    collect(runGenerate(config({ checkpoint: join(dir, "missing.safetensors") }))),
    CheckpointError,
  );
  const cut = join(dir, "cut.safetensors");
  await truncateCopy(ckpt, cut, 1000);
  await assert.rejects(collect(runGenerate(config({ checkpoint: cut }))), CheckpointError);
  assert.equal(g.pool.stats().liveBuffers, before, "failed runs release what they loaded");
  // top-k = vocab is allowed (same as 0 = all).
  assert.equal((await collect(runGenerate(config({ sample_top_k: 256, tokens: 2 })))).length, 2);
});
