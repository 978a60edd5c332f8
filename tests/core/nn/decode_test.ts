/**
 * KV-cache decoding (core/nn/decode.ts) and on-GPU sampling
 * (gpu/kernels/sample.ts).
 *
 * - Logits: the prefill's and every cached step's logits (B, V) against the
 *   last row of a full forward of the same prefix, teacher-forced on random
 *   tokens, dense and MoE (k < E, k = E on the MoE path), B = 1 and 3.
 *   Tolerance |got − want| ≤ 1e-4 + 1e-4·|want|: attention is the same
 *   formula in the same summation order; the step's FFN runs the decode
 *   GEMVs (core/nn/moe_ffn_decode.ts), which sum in another order (measured
 *   max error 1.4e-6 on logits of size ~1-10).
 * - Which kernels run: a step's FFN is the decode GEMVs, tagged `ffn/` in a
 *   profile, and nothing but the FFN is tagged.
 * - Tokens: a generation (greedy, and seeded temperature + top-k) equals a
 *   reference that recomputes the full prefix every step (model.forward,
 *   logits read back, the window cropped to the last ctx tokens as nanoGPT)
 *   and draws with the same sampling kernel, dense and MoE, B = 1 and 3,
 *   with prompt + gen past ctx so the crop path runs too.
 * - The sampling kernel against a float64 TS reference of the same hash RNG
 *   (draws whose u lands within 1e-5 of a CDF boundary are skipped: GPU exp
 *   is not correctly rounded; at most a handful are), argmax ties, top-k
 *   ties at the cut, the draw distribution, and seed determinism.
 * - No live-buffer growth across generations; bad input.
 */
import assert from "node:assert/strict";
import { ConfigError, ShapeError } from "../../../core/errors.ts";
import type { GPTConfig } from "../../../core/nn/config.ts";
import { paramShapes } from "../../../core/nn/config.ts";
import { Decoder, sampleInto, type SamplingConfig } from "../../../core/nn/decode.ts";
import { GPT } from "../../../core/nn/gpt.ts";
import type { MoeLayout } from "../../../core/nn/moe_layout.ts";
import { Rng } from "../../../core/rng.ts";
import { keep, tidy, tidyAsync } from "../../../core/scope.ts";
import { noGrad } from "../../../core/tape.ts";
import { type Tensor, tensor } from "../../../core/tensor.ts";
import { sampleUniform } from "../../../gpu/kernels/sample.ts";
import { assertAllClose, setupGpu } from "../../_helpers.ts";

const g = await setupGpu();
const TOL = { atol: 1e-4, rtol: 1e-4 };

const CONFIG: GPTConfig = {
  vocab: 64,
  ctx: 12,
  d_model: 16,
  n_layer: 2,
  n_head: 2,
  d_ff: 32,
  bias: true,
  activation: "relu",
};
const E = 4;

/**
 * A model with weights larger than GPT-2's init (std 0.3), so that logits
 * differ clearly between contexts and greedy decoding has no near-ties;
 * with `moe`, random routers (std 1) and the identity layout.
 */
function makeModel(seed: number, moe: boolean, config = CONFIG): GPT {
  const rng = new Rng(seed);
  const params = new Map<string, Tensor>();
  for (const [name, shape] of paramShapes(config, moe ? E : undefined)) {
    const n = shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (/ln_\d\.weight$|ln_f\.weight$/.test(name)) {
      data = Float32Array.from(rng.normalArray(n, 0.1), (v) => 1 + v);
    } else if (name.endsWith(".bias")) data = rng.normalArray(n, 0.05);
    else if (name.endsWith("router.weight")) data = rng.normalArray(n, 1);
    else data = rng.normalArray(n, 0.3);
    params.set(name, keep(tensor(data, shape, { name })));
  }
  const layout: MoeLayout | null = moe
    ? {
      experts: E,
      top_k: 2,
      router: "centroid",
      method: "param",
      perms: Array.from(
        { length: config.n_layer },
        () => Array.from({ length: config.d_ff }, (_, i) => i),
      ),
    }
    : null;
  return new GPT(config, params, layout);
}

function randomTokens(B: number, T: number, V: number, seed: number): number[][] {
  const rng = new Rng(seed);
  return Array.from({ length: B }, () => Array.from({ length: T }, () => rng.int(V)));
}

/** Last-row logits (B, V) of a full forward of `rows` (B, T), on the host. */
async function fullLastLogits(
  model: GPT,
  rows: number[][],
  opts: { topK?: number; forceSparse?: boolean },
): Promise<Float32Array> {
  const B = rows.length;
  const T = rows[0].length;
  const V = model.config.vocab;
  const all = await tidyAsync(() =>
    noGrad(() => model.forward(tensor(rows.flat(), [B, T], { dtype: "u32" }), undefined, opts))
      .logits.data()
  );
  const out = new Float32Array(B * V);
  for (let b = 0; b < B; b++) out.set(all.subarray((b * T + T - 1) * V, (b * T + T) * V), b * V);
  return out;
}

interface Variant {
  name: string;
  moe: boolean;
  opts: { topK?: number; forceSparse?: boolean };
}

const VARIANTS: Variant[] = [
  { name: "dense", moe: false, opts: {} },
  { name: "MoE k=1", moe: true, opts: { topK: 1 } },
  { name: "MoE k=2", moe: true, opts: { topK: 2 } },
  { name: "MoE k=E, MoE path", moe: true, opts: { topK: E, forceSparse: true } },
];

Deno.test("Decoder: prefill and every cached step match the full forward's last row", async () => {
  for (const v of VARIANTS) {
    const model = makeModel(11, v.moe);
    try {
      for (const B of [1, 3]) {
        const dec = new Decoder(model, B, v.opts);
        const S = CONFIG.ctx;
        const P = 3;
        const rows = randomTokens(B, S, CONFIG.vocab, 5 + B);
        const seq = keep(tensor(rows.flat(), [B, S], { dtype: "u32" }));
        const prompt = tensor(rows.map((r) => r.slice(0, P)).flat(), [B, P], { dtype: "u32" });
        const got: Float32Array[] = [];
        got.push(await tidyAsync(() => dec.prefill(prompt).data()));
        prompt.release();
        // Teacher-forced: step `col` embeds rows[:, col] and predicts col + 1.
        for (let col = P; col < S; col++) {
          got.push(await tidyAsync(() => dec.step(seq, col).data()));
        }
        for (let i = 0; i < got.length; i++) {
          const T = P + i;
          const want = await fullLastLogits(model, rows.map((r) => r.slice(0, T)), v.opts);
          assertAllClose(got[i], want, TOL, `${v.name} B=${B} prefix ${T}`);
        }
        seq.release();
        dec.release();
      }
    } finally {
      model.release();
    }
  }
});

Deno.test("Decoder.step(): the FFN runs the decode GEMVs, and only FFN kernels are tagged", async () => {
  for (const v of [VARIANTS[0], VARIANTS[2]]) {
    const model = makeModel(2, v.moe);
    const dec = new Decoder(model, 2, v.opts);
    try {
      const seq = keep(
        tensor(randomTokens(2, 6, CONFIG.vocab, 1).flat(), [2, 6], { dtype: "u32" }),
      );
      tidy(() => dec.prefill(tensor([1, 2, 3, 4], [2, 2], { dtype: "u32" })));
      assert.ok(g.recorder.setProfiling(true), "the test adapter has timestamp queries");
      tidy(() => dec.step(seq, 2));
      const names = [...(await g.recorder.takeProfile()).keys()];
      g.recorder.setProfiling(false);
      const ffn = names.filter((n) => n.startsWith("ffn/"));
      assert.ok(ffn.length > 0 && ffn.every((n) => n.startsWith("ffn/moe_decode.")), names.join());
      for (const n of ["kv_attention.scores", "kv_attention.mix", "decode.embed"]) {
        assert.ok(names.includes(n), `${n} in ${names.join()}`);
      }
      assert.ok(!names.some((n) => n.startsWith("ffn/") && /attention|layernorm/.test(n)));
      seq.release();
    } finally {
      g.recorder.setProfiling(false);
      dec.release();
      model.release();
    }
  }
});

/**
 * Reference generation: every step runs the full forward of the (cropped)
 * prefix, reads the logits back, and draws with the same sampling kernel
 * from them (uploaded again as (B, V)).
 */
async function referenceGenerate(
  model: GPT,
  prompts: number[][],
  gen: number,
  sampling: SamplingConfig,
  opts: { topK?: number; forceSparse?: boolean },
): Promise<number[][]> {
  const B = prompts.length;
  const V = model.config.vocab;
  const ctx = model.config.ctx;
  const seqs = prompts.map((p) => [...p]);
  for (let s = 0; s < gen; s++) {
    const window = seqs.map((r) => r.slice(-ctx));
    const logits = await fullLastLogits(model, window, opts);
    const next = await tidyAsync(async () => {
      const out = tensor(new Uint32Array(B), [B, 1], { dtype: "u32" });
      sampleInto(out, 0, tensor(logits, [B, V]), sampling, s);
      return await out.toArray();
    });
    seqs.forEach((r, b) => r.push(next[b]));
  }
  return seqs.map((r) => r.slice(prompts[0].length));
}

Deno.test("Decoder.generate() equals recomputing the full prefix each step, past ctx too", async () => {
  const samplings: SamplingConfig[] = [
    { temperature: 0, topK: 0, seed: 0 },
    { temperature: 0.9, topK: 8, seed: 1234 },
    { temperature: 1.5, topK: 0, seed: -7 },
  ];
  for (const v of VARIANTS.slice(0, 3)) {
    const model = makeModel(23, v.moe);
    try {
      for (const B of [1, 3]) {
        const dec = new Decoder(model, B, v.opts);
        // 4 + 14 > ctx 12: the last 6 tokens come from the cropped window.
        const prompts = randomTokens(B, 4, CONFIG.vocab, 40 + B);
        for (const sampling of samplings) {
          const got = (await dec.generate(prompts, 14, sampling)).map((r) => Array.from(r));
          const want = await referenceGenerate(model, prompts, 14, sampling, v.opts);
          assert.deepEqual(got, want, `${v.name} B=${B} ${JSON.stringify(sampling)}`);
          if (sampling.temperature === 0) {
            assert.ok(new Set(got.flat()).size > 2, "greedy output should not be one token");
          }
        }
        dec.release();
      }
    } finally {
      model.release();
    }
  }
});

Deno.test("Decoder.generate(): a prompt longer than ctx, and the same seed, same tokens", async () => {
  const model = makeModel(5, false);
  const dec = new Decoder(model, 2);
  try {
    const prompts = randomTokens(2, 17, CONFIG.vocab, 9);
    const sampling = { temperature: 1, topK: 5, seed: 77 };
    const a = await dec.generate(prompts, 6, sampling);
    const b = await dec.generate(prompts, 6, sampling);
    const c = await dec.generate(prompts, 6, { ...sampling, seed: 78 });
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    const want = await referenceGenerate(model, prompts, 6, sampling, {});
    assert.deepEqual(a.map((r) => Array.from(r)), want);
  } finally {
    dec.release();
    model.release();
  }
});

Deno.test("Generation: recorded in chunks or at once, the same tokens and one wait per read", async () => {
  const model = makeModel(8, true);
  const dec = new Decoder(model, 3, { topK: 2 });
  try {
    const prompts = randomTokens(3, 2, CONFIG.vocab, 3);
    const sampling = { temperature: 0.7, topK: 0, seed: 5 };
    const whole = await dec.generate(prompts, 9, sampling);
    const run = dec.start(prompts, 9, sampling);
    const waits = g.recorder.stats().hostWaits;
    const parts: Uint32Array[][] = [];
    for (const n of [4, 0, 5]) {
      run.advance(n);
      parts.push(await run.read(run.done - n, run.done));
    }
    assert.equal(g.recorder.stats().hostWaits - waits, 2, "one host wait per non-empty read");
    run.release();
    const joined = whole.map((_, b) => Uint32Array.from(parts.flatMap((p) => Array.from(p[b]))));
    assert.deepEqual(joined, whole);
    // The whole generation is recorded with no wait at all: only its one read waits.
    const run2 = dec.start(prompts, 9, sampling);
    const w0 = g.recorder.stats().hostWaits;
    run2.advance();
    assert.equal(g.recorder.stats().hostWaits, w0, "advance() never waits");
    assert.deepEqual(await run2.read(), whole);
    run2.release();
  } finally {
    dec.release();
    model.release();
  }
});

Deno.test("Decoder: no live-buffer growth across generations; release returns everything", async () => {
  const model = makeModel(3, true);
  try {
    const before = g.pool.stats().liveBuffers;
    const dec = new Decoder(model, 2, { topK: 1 });
    const prompts = randomTokens(2, 3, CONFIG.vocab, 1);
    const live: number[] = [];
    for (let i = 0; i < 3; i++) {
      await dec.generate(prompts, 15, { temperature: 1, topK: 4, seed: i });
      live.push(g.pool.stats().liveBuffers);
    }
    assert.ok(live.every((n) => n === live[0]), `live buffers per generation: ${live.join(",")}`);
    dec.release();
    // The model caches one position-id tensor per prefill length (3 and ctx), kept for reuse.
    const after = g.pool.stats().liveBuffers;
    assert.ok(after - before <= 2, `${after - before} buffers left by decoding`);
  } finally {
    model.release();
  }
});

// ---- the sampling kernel -------------------------------------------------------

/** Float64 reference of sample.rows for one row; null when u is within `eps` of a boundary. */
function refSample(
  logits: ArrayLike<number>,
  s: SamplingConfig,
  step: number,
  row: number,
  eps = 1e-5,
): number | null {
  const V = logits.length;
  const ids = Array.from({ length: V }, (_, i) => i);
  let best = 0;
  for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
  if (s.temperature === 0) return best;
  let keep = ids;
  if (s.topK > 0 && s.topK < V) {
    keep = [...ids].sort((a, b) => logits[b] - logits[a] || a - b).slice(0, s.topK)
      .sort((a, b) => a - b);
  }
  const w = keep.map((i) => Math.exp((logits[i] - logits[best]) / s.temperature));
  const total = w.reduce((a, b) => a + b, 0);
  const u = sampleUniform(s.seed, step, row) * total;
  let cum = 0;
  for (let j = 0; j < keep.length; j++) {
    cum += w[j];
    if (Math.abs(u - cum) < eps * total) return null;
    if (u < cum) return keep[j];
  }
  return keep[keep.length - 1];
}

async function gpuSample(
  logits: Float32Array,
  R: number,
  s: SamplingConfig,
  step: number,
): Promise<Uint32Array> {
  return await tidyAsync(async () => {
    const V = logits.length / R;
    const out = tensor(new Uint32Array(R * 2), [R, 2], { dtype: "u32" });
    sampleInto(out, 1, tensor(logits, [R, V]), s, step);
    const all = await out.toArray() as Uint32Array;
    return Uint32Array.from({ length: R }, (_, r) => all[2 * r + 1]);
  });
}

Deno.test("sampleInto() matches a float64 reference of the same hash RNG", async () => {
  const R = 300;
  const V = 37;
  const rng = new Rng(4);
  const logits = Float32Array.from({ length: R * V }, () => 2 * rng.normal());
  let skipped = 0;
  let compared = 0;
  const cases: [SamplingConfig, number][] = [
    [{ temperature: 1, topK: 0, seed: 1 }, 0],
    [{ temperature: 0.5, topK: 5, seed: 2 }, 3],
    [{ temperature: 2, topK: 1, seed: 3 }, 9],
    [{ temperature: 0.8, topK: 36, seed: 2 ** 40 + 3 }, 100],
    [{ temperature: 1.3, topK: V, seed: -1 }, 4_000_000_000],
    [{ temperature: 0, topK: 4, seed: 5 }, 7],
  ];
  for (const [s, step] of cases) {
    const got = await gpuSample(logits, R, s, step);
    for (let r = 0; r < R; r++) {
      const want = refSample(logits.subarray(r * V, (r + 1) * V), s, step, r);
      if (want === null) {
        skipped++;
        continue;
      }
      compared++;
      assert.equal(got[r], want, `row ${r} ${JSON.stringify(s)} step ${step}`);
    }
  }
  assert.ok(skipped <= 5, `${skipped} draws too close to a boundary to compare`);
  assert.ok(compared > 1700);
});

Deno.test("sampleInto(): argmax ties go to the lower id; top-k ties at the cut keep the lower ids", async () => {
  const rows = [
    [0.1, 3, -2, 3, 1],
    [-5, -4, -4.5, -4, -4],
    [7, 7, 7, 7, 7],
    [-1, 2, 2, 2, 0],
  ];
  const flat = Float32Array.from(rows.flat());
  const greedy = await gpuSample(flat, 4, { temperature: 0, topK: 0, seed: 0 }, 0);
  assert.deepEqual(Array.from(greedy), [1, 1, 0, 1]);
  // top-1 is argmax whatever the temperature and seed.
  for (let seed = 0; seed < 5; seed++) {
    const t1 = await gpuSample(flat, 4, { temperature: 3, topK: 1, seed }, seed);
    assert.deepEqual(Array.from(t1), [1, 1, 0, 1]);
  }
  // Row [0.5, 2, -1, 1.9, 0, 1.8, 1.8] at top-3 keeps ids 1, 3, 5 (5 wins the 1.8 tie).
  const R = 2000;
  const row = [0.5, 2, -1, 1.9, 0, 1.8, 1.8];
  const many = Float32Array.from({ length: R * row.length }, (_, i) => row[i % row.length]);
  const seen = new Set(await gpuSample(many, R, { temperature: 5, topK: 3, seed: 9 }, 0));
  assert.deepEqual([...seen].sort(), [1, 3, 5]);
});

Deno.test("sampleInto(): draws follow softmax(logits / temperature)", async () => {
  const p = [0.2, 0.3, 0.5];
  const R = 20000;
  const logits = Float32Array.from({ length: R * 3 }, (_, i) => Math.log(p[i % 3]));
  for (const temperature of [1, 0.5]) {
    const want = p.map((x) => x ** (1 / temperature));
    const z = want.reduce((a, b) => a + b);
    const got = await gpuSample(logits, R, { temperature, topK: 0, seed: 3 }, 1);
    const counts = [0, 0, 0];
    for (const t of got) counts[t]++;
    // Binomial std at N = 20000 is at most 0.0035: 0.015 is over 4 sigma.
    counts.forEach((c, i) => {
      assert.ok(Math.abs(c / R - want[i] / z) < 0.015, `T=${temperature} id ${i}: ${c / R}`);
    });
  }
});

Deno.test("sampleUniform(): counter-based, in [0, 1), and spread over rows and steps", () => {
  const xs: number[] = [];
  for (let step = 0; step < 50; step++) {
    for (let row = 0; row < 40; row++) xs.push(sampleUniform(123, step, row));
  }
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  const mean = xs.reduce((a, b) => a + b) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.03, `mean ${mean}`);
  assert.equal(new Set(xs).size, xs.length, "no repeated draws");
  assert.equal(sampleUniform(123, 4, 5), sampleUniform(123, 4, 5));
  assert.notEqual(sampleUniform(123, 4, 5), sampleUniform(124, 4, 5));
  assert.notEqual(sampleUniform(2 ** 32 + 123, 4, 5), sampleUniform(123, 4, 5));
});

Deno.test("Decoder and sampleInto reject bad input with one clear error", () => {
  const dense = makeModel(1, false);
  const moe = makeModel(1, true);
  try {
    assert.throws(() => new Decoder(dense, 1, { topK: 1 }), ConfigError);
    assert.throws(() => new Decoder(moe, 1, { topK: E + 1 }), /top-k must be in 1\.\.4/);
    assert.throws(() => new Decoder(moe, 0), ShapeError);
    const dec = new Decoder(dense, 2);
    tidy(() => {
      const long = tensor(new Uint32Array(2 * 13), [2, 13], { dtype: "u32" });
      assert.throws(() => dec.prefill(long), /prompt length 13 must be in 1\.\.12/);
      const one = tensor(new Uint32Array(4), [1, 4], { dtype: "u32" });
      assert.throws(() => dec.prefill(one), /tokens must be u32 \(2, T\)/);
      const seq = tensor(new Uint32Array(2 * 20), [2, 20], { dtype: "u32" });
      assert.throws(() => dec.step(seq, 12), /column 12 must be in 0\.\.11/);
      const f = tensor(new Float32Array(2 * 64), [2, 64]);
      assert.throws(
        () => sampleInto(seq, 20, f, { temperature: 0, topK: 0, seed: 0 }, 0),
        ShapeError,
      );
      assert.throws(
        () => sampleInto(seq, 0, f, { temperature: -1, topK: 0, seed: 0 }, 0),
        ConfigError,
      );
      assert.throws(() => sampleInto(seq, 0, f, { temperature: 1, topK: 65, seed: 0 }, 0), /top-k/);
    });
    assert.throws(
      () => dec.start([[1, 2], [3]], 4, { temperature: 0, topK: 0, seed: 0 }),
      /one length/,
    );
    assert.throws(
      () => dec.start([[1], [64]], 4, { temperature: 0, topK: 0, seed: 0 }),
      /outside 0\.\.63/,
    );
    const run = dec.start([[1], [2]], 2, { temperature: 0, topK: 0, seed: 0 });
    assert.throws(() => run.advance(3), /do not fit/);
    run.release();
    dec.release();
  } finally {
    dense.release();
    moe.release();
  }
});
