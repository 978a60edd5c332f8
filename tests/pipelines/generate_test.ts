/**
 * `ssd generate`'s pipeline in process: the sampler on the host (greedy,
 * top-k support, the temperature-scaled distribution), determinism per seed,
 * greedy decoding against argmax of a direct forward (context cropped to
 * ctx), the per-step scope (no pool growth), and bad input.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { CheckpointError, ConfigError } from "../../core/errors.ts";
import { loadGPT } from "../../core/nn/gpt_checkpoint.ts";
import { Rng } from "../../core/rng.ts";
import { tidyAsync } from "../../core/scope.ts";
import { noGrad } from "../../core/tape.ts";
import { tensor } from "../../core/tensor.ts";
import { encode } from "../../core/tokenizer.ts";
import {
  type GenerateConfig,
  generateTokens,
  runGenerate,
  sampleToken,
} from "../../pipelines/generate.ts";
import { setupGpu } from "../_helpers.ts";
import { TINY_CONFIG, truncateCopy, writeTinyCheckpoint } from "./_tiny_checkpoint.ts";

// Tests never pay for a kernel trial (the pipelines run one when autotune is on).
Deno.env.set("SSD_NO_AUTOTUNE", "1");
const g = await setupGpu();
const dir = await Deno.makeTempDir({ prefix: "ssd_generate_" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
const ckpt = join(dir, "tiny.safetensors");
await writeTinyCheckpoint(ckpt, { seed: 3 });

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

Deno.test("sampleToken(): temperature 0 is argmax, ties to the lower id", () => {
  const rng = new Rng(1);
  assert.equal(sampleToken(Float32Array.from([0.1, 3, -2, 3, 1]), 0, 0, rng), 1);
  assert.equal(sampleToken(Float32Array.from([-5, -4, -4.5]), 0, 2, rng), 1);
  assert.deepEqual(rng.state(), new Rng(1).state(), "greedy draws no random numbers");
});

Deno.test("sampleToken(): top-k keeps only the k largest logits; top-1 is argmax", () => {
  const logits = Float32Array.from([0.5, 2, -1, 1.9, 0, 1.8, 1.8]);
  const rng = new Rng(2);
  const seen = new Set<number>();
  for (let i = 0; i < 2000; i++) seen.add(sampleToken(logits, 5, 3, rng));
  // The three largest are 2 (id 1), 1.9 (id 3) and the first of the tied 1.8s (id 5).
  assert.deepEqual([...seen].sort(), [1, 3, 5]);
  for (let i = 0; i < 50; i++) assert.equal(sampleToken(logits, 3, 1, rng), 1);
});

Deno.test("sampleToken(): draws follow softmax(logits / temperature)", () => {
  const p = [0.2, 0.3, 0.5];
  const logits = Float32Array.from(p, Math.log);
  for (const temperature of [1, 0.5]) {
    const want = p.map((x) => x ** (1 / temperature));
    const z = want.reduce((a, b) => a + b);
    const rng = new Rng(3);
    const counts = [0, 0, 0];
    const N = 20000;
    for (let i = 0; i < N; i++) counts[sampleToken(logits, temperature, 0, rng)]++;
    // Binomial std at N = 20000 is at most 0.0035: 0.015 is over 4 sigma.
    counts.forEach((c, i) => {
      assert.ok(Math.abs(c / N - want[i] / z) < 0.015, `T=${temperature} id ${i}: ${c / N}`);
    });
  }
});

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
  // A prompt longer than ctx, and more steps than ctx: every step crops.
  const prompt = "a longer prompt than eight bytes";
  const steps = 2 * TINY_CONFIG.ctx + 3;
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
    assert.deepEqual(got, want);
    assert.ok(new Set(want).size > 1, "the test model should not emit one byte forever");
  } finally {
    model.release();
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
