/**
 * `ssd bench`'s pipeline in process, on tiny checkpoints (ctx 8, d_model 16,
 * d_ff 32, one layer): MoE at k = E scores the dense loss (on the MoE path,
 * f32 rounding only: |Δ| ≤ 1e-5·loss) while k = 1 does not; FFN FLOPs per
 * token by the exact formula, falling as k/E; in-memory MoE-fying equals
 * `ssd moefy`'s checkpoint; an MoE checkpoint brings its own experts; the
 * JSON document's keys are the contract's; no buffers left behind; bad input.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError } from "../../../core/errors.ts";
import { loadGPT } from "../../../core/nn/gpt_checkpoint.ts";
import { Rng } from "../../../core/rng.ts";
import {
  type BenchConfig,
  benchFfnFlops,
  benchJson,
  defaultTopKs,
  runBench,
} from "../../../pipelines/bench/run.ts";
import { evaluateTokens } from "../../../core/nn/token_nll.ts";
import { runMoefy } from "../../../pipelines/moefy.ts";
import { setupGpu } from "../../_helpers.ts";
import { assertBenchContract } from "./_contract.ts";
import { sampleText, TINY_CONFIG, writeTinyCheckpoint } from "../_tiny_checkpoint.ts";
import { scratchDir } from "../_scratch.ts";

Deno.env.set("SSD_NO_AUTOTUNE", "1");
const g = await setupGpu();
const dir = await scratchDir("ssd_bench_");
const dense = join(dir, "dense.safetensors");
await writeTinyCheckpoint(dense, { seed: 4 });
const data = join(dir, "val.txt");
await Deno.writeTextFile(data, sampleText(3000));

// An MoE checkpoint: E = 4, top_k 2, identity permutation, random routers.
const moe = join(dir, "moe.safetensors");
const E = 4;
const rng = new Rng(9);
await writeTinyCheckpoint(moe, {
  seed: 5,
  moe: {
    experts: E,
    top_k: 2,
    router: "centroid",
    method: "param",
    perms: [Array.from({ length: TINY_CONFIG.d_ff }, (_, i) => i)],
  },
  extra: {
    "transformer.h.0.mlp.router.weight": {
      dtype: "F32",
      shape: [E, TINY_CONFIG.d_model],
      data: rng.normalArray(E * TINY_CONFIG.d_model, 1),
    },
  },
});

function config(over: Partial<BenchConfig> = {}): BenchConfig {
  return {
    checkpoint: dense,
    top_k: null,
    batch: [3],
    prompt_len: null,
    gen: null,
    experts: null,
    data,
    val_tokens: 1000,
    reps: 1,
    ...over,
  };
}

Deno.test("runBench(): k = E scores the dense loss, k = 1 does not; FLOPs fall as k/E", async () => {
  const r = await runBench(config({ experts: E, top_k: [1, 2, E] }));
  assert.equal(r.experts, E);
  assert.equal(r.moefied, true);
  assert.deepEqual(r.rows.map((x) => [x.mode, x.top_k]), [
    ["dense", null],
    ["moe", 1],
    ["moe", 2],
    ["moe", E],
  ]);
  const [d, k1, k2, kE] = r.rows;
  assert.ok(
    Math.abs(kE.val_loss - d.val_loss) <= 1e-5 * d.val_loss,
    `${kE.val_loss} vs ${d.val_loss}`,
  );
  assert.ok(Math.abs(kE.val_bpb - d.val_bpb) <= 1e-5 * d.val_bpb);
  assert.ok(Math.abs(k1.val_loss - d.val_loss) > 1e-3, "one expert of four should change the loss");
  // Exact formula: dense 4·C·d_ff·L; MoE router 2·C·E·L plus k/E of dense.
  const { d_model: C, d_ff: F, n_layer: L } = TINY_CONFIG;
  assert.equal(d.ffn_flops_per_token, 4 * C * F * L);
  for (const row of [k1, k2, kE]) {
    const router = 2 * C * E * L;
    assert.equal(row.ffn_flops_per_token, router + (4 * C * F * L * row.top_k!) / E);
    assert.equal((row.ffn_flops_per_token - router) / d.ffn_flops_per_token, row.top_k! / E);
  }
  assert.equal(benchFfnFlops(TINY_CONFIG, null, null), 4 * C * F * L);
  // Shapes of the measurements.
  assert.equal(r.prompt_len, TINY_CONFIG.ctx / 2);
  assert.equal(r.gen, TINY_CONFIG.ctx / 2);
  for (const row of r.rows) {
    assert.equal(row.prefill.batch, 3);
    assert.deepEqual(row.decode.map((x) => x.batch), [1, 3]);
    for (
      const x of [
        row.prefill.tokens_per_s,
        row.prefill.ms,
        ...row.decode.map((y) => y.ms_per_token),
      ]
    ) {
      assert.ok(Number.isFinite(x) && x > 0);
    }
    for (const x of row.decode) {
      assert.ok(
        Math.abs(x.tokens_per_s - (x.batch * 1000) / x.ms_per_token) < 1e-6 * x.tokens_per_s,
      );
      if (g.dev.hasTimestamps) {
        assert.ok(x.ffn_share! > 0 && x.ffn_share! < 1, `ffn share ${x.ffn_share}`);
        assert.ok(x.ffn_ms_per_token! > 0);
      }
    }
  }
});

Deno.test("runBench(): --experts MoE-fies as ssd moefy does (same loss at each k)", async () => {
  const out = join(dir, "moefied.safetensors");
  await runMoefy({
    checkpoint: dense,
    out,
    experts: E,
    top_k: null,
    method: "param",
    router: "centroid",
    data,
    tokens: 64,
    eval_tokens: 64,
    iters: 50,
    seed: 0,
  });
  const r = await runBench(config({ experts: E, top_k: [1, 2] }));
  const { model } = await loadGPT(out);
  try {
    const text = new TextEncoder().encode(await Deno.readTextFile(data)).subarray(0, 1001);
    for (const row of r.rows.slice(1)) {
      const want = await evaluateTokens(model, text, 16, row.top_k!);
      assert.equal(row.val_loss, want.nll, `k = ${row.top_k}`);
    }
  } finally {
    model.release();
  }
});

Deno.test("runBench(): an MoE checkpoint uses its experts; default ks; JSON keys of the contract", async () => {
  const r = await runBench(config({ checkpoint: moe, batch: [2] }));
  assert.equal(r.experts, E);
  assert.equal(r.moefied, false);
  assert.deepEqual(defaultTopKs(16, 4), [1, 2, 4, 8, 16]);
  assert.deepEqual(defaultTopKs(16, 3), [1, 2, 3, 4, 8, 16]);
  assert.deepEqual(defaultTopKs(4, null), [1, 2, 4]);
  assert.deepEqual(r.rows.map((x) => x.top_k), [null, ...defaultTopKs(E, 2)]);
  const json = JSON.parse(JSON.stringify(benchJson(r)));
  assertBenchContract(json);
  assert.deepEqual(json.model, {
    d_model: 16,
    n_layer: 1,
    n_head: 2,
    d_ff: 32,
    ctx: 8,
    vocab: 256,
  });
  assert.equal(json.rows[0].mode, "dense");
  assert.equal(typeof json.device, "string");
  // A dense checkpoint with no --experts and no --top-k: the dense row only.
  const only = await runBench(config({ batch: [1] }));
  assert.equal(only.experts, null);
  assert.deepEqual(only.rows.map((x) => x.mode), ["dense"]);
  assert.deepEqual(only.rows[0].decode.map((x) => x.batch), [1]);
});

Deno.test("runBench() leaves no buffers behind and rejects bad input with one clear error", async () => {
  const before = g.pool.stats().liveBuffers;
  await runBench(config({ experts: 2, top_k: [1], batch: [2], prompt_len: 3, gen: 5 }));
  assert.equal(g.pool.stats().liveBuffers, before, "live buffers after a run");
  const cases: [Partial<BenchConfig>, RegExp][] = [
    [{ experts: E, top_k: [5] }, /--top-k must be in 1\.\.4/],
    [{ experts: E, top_k: [0] }, /--top-k must be a positive integer, got 0/],
    [{ top_k: [2] }, /--top-k needs experts, and .*dense\.safetensors is dense: add --experts/],
    [{ experts: 5 }, /--experts 5 does not divide d_ff 32/],
    [{ checkpoint: moe, experts: 8 }, /MoE checkpoint with 4 experts: --experts 8/],
    [{ prompt_len: 6, gen: 3 }, /--prompt-len 6 \+ --gen 3 must be at most the context 8/],
    [{ batch: [] }, /--batch needs at least one/],
    [{ reps: 0 }, /--reps must be a positive integer/],
    [{ data: join(dir, "nope.txt") }, /--data: no such file/],
  ];
  for (const [over, re] of cases) {
    await assert.rejects(
      runBench(config(over)),
      (e: Error) => e instanceof ConfigError && re.test(e.message),
      JSON.stringify(over),
    );
  }
  await assert.rejects(
    runBench(config({ checkpoint: join(dir, "missing.safetensors") })),
    /not found/,
  );
  assert.equal(g.pool.stats().liveBuffers, before, "failed runs release what they loaded");
});
