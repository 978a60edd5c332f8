/**
 * `runEval()` in process against a direct computation: the checkpoint's
 * model is run over the same eval windows (all full windows in one
 * forward, the short last one alone), and the mean next-token NLL is
 * computed on the host in float64 from the logits, independently of the
 * cross-entropy kernel and of `evaluateTokens`. Tolerance: 1e-5 relative
 * (f32 logits, float64 log-softmax on the host vs f32 on the GPU).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { BROWN_SOURCE } from "../../core/corpus_brown.ts";
import { evalWindows, loadBrownDataset } from "../../core/data.ts";
import { CheckpointError, ConfigError } from "../../core/errors.ts";
import { loadGPT, saveGPT } from "../../core/nn/gpt_checkpoint.ts";
import { GPT } from "../../core/nn/gpt.ts";
import { paramCount } from "../../core/nn/config.ts";
import { Rng } from "../../core/rng.ts";
import { runInspect } from "../../pipelines/inspect.ts";
import { tidyAsync } from "../../core/scope.ts";
import { noGrad } from "../../core/tape.ts";
import { tensor } from "../../core/tensor.ts";
import { encode } from "../../core/tokenizer.ts";
import { loadEvalTokens } from "../../pipelines/checks.ts";
import { EVAL_CHUNK_WINDOWS, runEval } from "../../pipelines/eval.ts";
import { setupGpu } from "../_helpers.ts";
import { sampleText, TINY_CONFIG, writeTinyCheckpoint } from "./_tiny_checkpoint.ts";
import { scratchTiny } from "./_scratch.ts";

// Tests never pay for a kernel trial (the pipelines run one when autotune is on).
Deno.env.set("SSD_NO_AUTOTUNE", "1");
const g = await setupGpu();
const { dir, ckpt } = await scratchTiny("ssd_eval_");

/** Mean NLL over the eval windows, from the model's logits, in float64 on the host. */
async function directNll(model: GPT, tokens: Uint8Array): Promise<{ nll: number; count: number }> {
  const { ctx, vocab: V } = model.config;
  const windows = evalWindows(tokens, ctx);
  const groups = [windows.filter((w) => w.scored === ctx), windows.filter((w) => w.scored < ctx)];
  let sum = 0;
  let count = 0;
  for (const group of groups) {
    if (group.length === 0) continue;
    const T = group[0].scored;
    const x = new Uint32Array(group.length * T);
    group.forEach((w, b) => x.set(tokens.subarray(w.start, w.start + T), b * T));
    const logits = await tidyAsync(() =>
      noGrad(() => model.forward(tensor(x, [group.length, T], { dtype: "u32" }))).logits.data()
    );
    group.forEach((w, b) => {
      for (let t = 0; t < T; t++) {
        const row = logits.subarray((b * T + t) * V, (b * T + t + 1) * V);
        let max = -Infinity;
        for (const v of row) max = Math.max(max, v);
        let z = 0;
        for (const v of row) z += Math.exp(v - max);
        sum += Math.log(z) + max - row[tokens[w.start + t + 1]];
        count++;
      }
    });
  }
  return { nll: sum / count, count };
}

Deno.test("runEval() equals a direct forward over the same windows", async () => {
  const { model } = await loadGPT(ckpt);
  try {
    const span = EVAL_CHUNK_WINDOWS * TINY_CONFIG.ctx;
    // Short texts, a short last window, exactly one chunk, one chunk plus 1 and 2 tokens.
    for (const n of [2, 9, 30, span + 1, span + 2, span + 3 * TINY_CONFIG.ctx + 4]) {
      const path = join(dir, `text_${n}.txt`);
      const text = sampleText(n, n);
      await Deno.writeTextFile(path, text);
      const r = await runEval({ checkpoint: ckpt, data: path, batch: 8 });
      const want = await directNll(model, encode(text));
      assert.equal(r.tokens, n - 1, `every token but the first is scored (n = ${n})`);
      assert.equal(want.count, n - 1);
      assert.ok(Math.abs(r.nll - want.nll) <= 1e-5 * want.nll, `n = ${n}: ${r.nll} vs ${want.nll}`);
      assert.ok(Math.abs(r.bpb - r.nll / Math.LN2) < 1e-12);
      assert.ok(Math.abs(r.ppl - Math.exp(r.nll)) <= 1e-12 * r.ppl);
      assert.equal(r.top_k, null);
      assert.equal(r.ctx, TINY_CONFIG.ctx);
      assert.equal(r.checkpoint, ckpt);
    }
  } finally {
    model.release();
  }
});

Deno.test("runEval() does not depend on the batch size and reports progress to the end", async () => {
  const path = join(dir, "batch.txt");
  await Deno.writeTextFile(path, sampleText(EVAL_CHUNK_WINDOWS * TINY_CONFIG.ctx + 300));
  const seen: [number, number][] = [];
  const a = await runEval({ checkpoint: ckpt, data: path, batch: 3 }, {
    onProgress: (done, total) => seen.push([done, total]),
  });
  const b = await runEval({ checkpoint: ckpt, data: path, batch: 13 });
  assert.ok(Math.abs(a.nll - b.nll) <= 1e-6 * a.nll, `${a.nll} vs ${b.nll}`);
  assert.equal(seen.length, 2, "two chunks, one report each");
  assert.deepEqual(seen[seen.length - 1], [a.tokens, a.tokens]);
});

Deno.test("runEval() scores a folder of .txt files whole (no validation split)", async () => {
  const folder = join(dir, "folder");
  await Deno.mkdir(folder);
  await Deno.writeTextFile(join(folder, "a.txt"), "first file\n");
  await Deno.writeTextFile(join(folder, "b.txt"), "second file, no newline");
  await Deno.writeTextFile(join(folder, "skip.md"), "not text data");
  const r = await runEval({ checkpoint: ckpt, data: folder, batch: 4 });
  // 11 + 23 bytes + the newline that ends b.txt; the first token is context only.
  assert.equal(r.tokens, 11 + 23 + 1 - 1);
  assert.match(r.source, /folder\/\*\.txt \(2 files\)$/);
});

Deno.test("loadEvalTokens() without --data is the embedded corpus's validation split", () => {
  const t = loadEvalTokens(null);
  assert.equal(t.tokens, loadBrownDataset().val);
  assert.equal(t.source, `${BROWN_SOURCE} (validation split)`);
});

Deno.test("runEval() rejects bad data, batch and checkpoints before using the GPU", async () => {
  const empty = join(dir, "empty.txt");
  await Deno.writeTextFile(empty, "");
  const one = join(dir, "one.txt");
  await Deno.writeTextFile(one, "x");
  const ok = join(dir, "ok.txt");
  await Deno.writeTextFile(ok, "some text to score");
  const live = g.pool.stats().liveBuffers;
  await assert.rejects(
    runEval({ checkpoint: ckpt, data: empty, batch: 8 }),
    (e: Error) => e instanceof ConfigError && /--data: file is empty/.test(e.message),
  );
  await assert.rejects(
    runEval({ checkpoint: ckpt, data: one, batch: 8 }),
    (e: Error) => e instanceof ConfigError && /has 1 token: need at least 2/.test(e.message),
  );
  await assert.rejects(
    runEval({ checkpoint: ckpt, data: join(dir, "missing.txt"), batch: 8 }),
    (e: Error) => e instanceof ConfigError && /no such file or folder/.test(e.message),
  );
  await assert.rejects(
    runEval({ checkpoint: ckpt, data: ok, batch: 0 }),
    (e: Error) => e instanceof ConfigError && /--batch must be a positive integer/.test(e.message),
  );
  await assert.rejects(
    runEval({ checkpoint: join(dir, "missing.safetensors"), data: ok, batch: 8 }),
    (e: Error) => e instanceof CheckpointError && /not found/.test(e.message),
  );
  const wide = join(dir, "wide.safetensors");
  await writeTinyCheckpoint(wide, { config: { ...TINY_CONFIG, vocab: 300 } });
  await assert.rejects(
    runEval({ checkpoint: wide, data: ok, batch: 8 }),
    (e: Error) => e instanceof CheckpointError && /vocab 300/.test(e.message),
  );
  assert.equal(g.pool.stats().liveBuffers, live, "a failed eval releases what it loaded");
});

Deno.test("eval and inspect read a checkpoint saved by saveGPT(GPT.init(...))", async () => {
  const path = join(dir, "saved.safetensors");
  const model = GPT.init({ ...TINY_CONFIG }, new Rng(42));
  try {
    await saveGPT(path, model, { train: { step: 3, tokens_seen: 96, tokenizer: "bytes-v1" } });
    const textPath = join(dir, "saved.txt");
    const text = sampleText(50);
    await Deno.writeTextFile(textPath, text);
    const r = await runEval({ checkpoint: path, data: textPath, batch: 4 });
    const want = await directNll(model, encode(text));
    assert.ok(Math.abs(r.nll - want.nll) <= 1e-5 * want.nll, `${r.nll} vs ${want.nll}`);
    // GPT-2 init gives near-uniform logits: the loss is close to ln 256.
    assert.ok(Math.abs(r.nll - Math.log(256)) < 0.1, `${r.nll}`);
  } finally {
    model.release();
  }
  const info = await runInspect({ checkpoint: path, all: false });
  assert.equal(info.parameters, paramCount(TINY_CONFIG));
  assert.equal(info.train?.step, 3);
  assert.equal(info.optimizer.count, 0);
});
