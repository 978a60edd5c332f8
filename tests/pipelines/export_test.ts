/**
 * `runExport()` in process. `hf`: an independent float64 GPT-2 written
 * here after Hugging Face's layout (Conv1D y = x·W + b with W [in, out],
 * pre-LN, causal softmax attention scaled by 1/√hs, ReLU or tanh GELU per
 * `activation_function`, head tied to wte), driven only by the exported
 * `config.json` and `model.safetensors`, must give the logits ssd's own GPU
 * forward gives on the checkpoint, within 1e-4: dense, without biases and
 * with GELU, and an MoE checkpoint (its dense form, also against the MoE
 * path at k = E). `nanogpt`: nanoGPT's names and shapes, the checkpoint's
 * values bit for bit. And the folder rules: refusal of an existing DIR,
 * `--force`, nothing written for a bad checkpoint, no temporaries left.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { f32Data, type HostTensor, readCheckpoint } from "../../core/checkpoint.ts";
import { CheckpointError, ConfigError } from "../../core/errors.ts";
import { type GPTConfig, paramCount, paramShapes } from "../../core/nn/config.ts";
import { loadGPT } from "../../core/nn/gpt_checkpoint.ts";
import { Rng } from "../../core/rng.ts";
import { tidyAsync } from "../../core/scope.ts";
import { noGrad } from "../../core/tape.ts";
import { tensor } from "../../core/tensor.ts";
import { encode } from "../../core/tokenizer.ts";
import { runExport } from "../../pipelines/export.ts";
import { assertAllClose, setupGpu } from "../_helpers.ts";
import { writeMismatched } from "./_mismatched_checkpoint.ts";
import { scratchDir } from "./_scratch.ts";
import { listDir, TINY_CONFIG, writeTinyCheckpoint } from "./_tiny_checkpoint.ts";

Deno.env.set("SSD_NO_AUTOTUNE", "1");
await setupGpu();
const dir = await scratchDir("ssd_export_");

const TEXT = "The cat"; // 7 bytes, under ctx 8

// ---------------------------------------------------------------------------
// The independent Hugging Face GPT-2 forward (float64, plain loops)

type F64 = Float64Array;

/** y (T, nOut) = x (T, nIn) · W (nIn, nOut) + b: Conv1D's layout. */
function conv1d(x: F64, T: number, w: F64, b: F64, nIn: number, nOut: number): F64 {
  const y = new Float64Array(T * nOut);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < nOut; o++) {
      let s = b[o];
      for (let i = 0; i < nIn; i++) s += x[t * nIn + i] * w[i * nOut + o];
      y[t * nOut + o] = s;
    }
  }
  return y;
}

function layerNorm(x: F64, T: number, C: number, g: F64, b: F64, eps: number): F64 {
  const y = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    const row = x.subarray(t * C, (t + 1) * C);
    const mean = row.reduce((a, v) => a + v, 0) / C;
    const v = row.reduce((a, x) => a + (x - mean) ** 2, 0) / C;
    for (let c = 0; c < C; c++) y[t * C + c] = (row[c] - mean) / Math.sqrt(v + eps) * g[c] + b[c];
  }
  return y;
}

function act(name: string, x: number): number {
  if (name === "relu") return Math.max(0, x);
  if (name === "gelu_new") {
    return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  }
  throw new Error(`reference: unknown activation_function ${name}`);
}

/** Logits (T, V) of a Hugging Face GPT-2 folder for token ids `ids`. */
async function hfLogits(folder: string, ids: number[]): Promise<F64> {
  const cfg = JSON.parse(await Deno.readTextFile(join(folder, "config.json")));
  const ck = await readCheckpoint(join(folder, "model.safetensors"), { allowForeign: true });
  assert.equal(ck.metadata.format, "pt", "transformers needs format pt in the metadata");
  const W = (name: string): F64 => {
    const t = ck.tensors.get(name);
    assert.ok(t, `hf export lacks ${name}`);
    return Float64Array.from(f32Data(t, name));
  };
  const { n_embd: C, n_head: H, n_inner: F, vocab_size: V, layer_norm_epsilon: eps } = cfg;
  const T = ids.length;
  const hs = C / H;
  const wte = W("transformer.wte.weight");
  const wpe = W("transformer.wpe.weight");
  let x = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < C; c++) x[t * C + c] = wte[ids[t] * C + c] + wpe[t * C + c];
  }
  for (let l = 0; l < cfg.n_layer; l++) {
    const p = `transformer.h.${l}.`;
    const a = layerNorm(x, T, C, W(p + "ln_1.weight"), W(p + "ln_1.bias"), eps);
    const qkv = conv1d(a, T, W(p + "attn.c_attn.weight"), W(p + "attn.c_attn.bias"), C, 3 * C);
    const y = new Float64Array(T * C);
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const s: number[] = [];
        for (let u = 0; u <= t; u++) {
          let d = 0;
          for (let e = 0; e < hs; e++) {
            d += qkv[t * 3 * C + h * hs + e] * qkv[u * 3 * C + C + h * hs + e];
          }
          s.push(d / Math.sqrt(hs));
        }
        const m = Math.max(...s);
        const z = s.reduce((acc, v) => acc + Math.exp(v - m), 0);
        for (let u = 0; u <= t; u++) {
          const pr = Math.exp(s[u] - m) / z;
          for (let e = 0; e < hs; e++) {
            y[t * C + h * hs + e] += pr * qkv[u * 3 * C + 2 * C + h * hs + e];
          }
        }
      }
    }
    const o = conv1d(y, T, W(p + "attn.c_proj.weight"), W(p + "attn.c_proj.bias"), C, C);
    x = x.map((v, i) => v + o[i]);
    const mIn = layerNorm(x, T, C, W(p + "ln_2.weight"), W(p + "ln_2.bias"), eps);
    const hid = conv1d(mIn, T, W(p + "mlp.c_fc.weight"), W(p + "mlp.c_fc.bias"), C, F)
      .map((v) => act(cfg.activation_function, v));
    const f = conv1d(hid, T, W(p + "mlp.c_proj.weight"), W(p + "mlp.c_proj.bias"), F, C);
    x = x.map((v, i) => v + f[i]);
  }
  const xf = layerNorm(x, T, C, W("transformer.ln_f.weight"), W("transformer.ln_f.bias"), eps);
  assert.equal(cfg.tie_word_embeddings, true);
  assert.equal(ck.tensors.has("lm_head.weight"), false, "a tied head is not stored");
  const logits = new Float64Array(T * V);
  for (let t = 0; t < T; t++) {
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let c = 0; c < C; c++) s += xf[t * C + c] * wte[v * C + c];
      logits[t * V + v] = s;
    }
  }
  return logits;
}

/** ssd's own logits (T, V) for `ids`: the checkpoint's GPT on the GPU, as `ssd eval` runs it. */
async function ssdLogits(
  ckpt: string,
  ids: number[],
  opts: { topK?: number; forceSparse?: boolean } = {},
): Promise<Float32Array> {
  const { model } = await loadGPT(ckpt);
  try {
    return await tidyAsync(() =>
      noGrad(() =>
        model.forward(
          tensor(Uint32Array.from(ids), [1, ids.length], { dtype: "u32" }),
          undefined,
          opts,
        )
      ).logits.data()
    );
  } finally {
    model.release();
  }
}

async function siblingsOf(folder: string, name: string): Promise<string[]> {
  return (await listDir(folder)).filter((n) => n.startsWith(`.${name}.`));
}

// ---------------------------------------------------------------------------
// hf

Deno.test("hf export: an independent GPT-2 forward on the folder gives ssd's logits", async () => {
  const ckpt = join(dir, "dense.safetensors");
  await writeTinyCheckpoint(ckpt, { optimizer: true });
  const out = join(dir, "dense_hf");
  const r = await runExport({ checkpoint: ckpt, out, format: "hf" });
  assert.deepEqual(r.files.map((f) => f.path), [
    join(out, "config.json"),
    join(out, "model.safetensors"),
  ]);
  assert.deepEqual(await listDir(out), ["config.json", "model.safetensors"]);
  for (const f of r.files) assert.equal(f.bytes, (await Deno.stat(f.path)).size);
  assert.equal(r.parameters, paramCount(TINY_CONFIG));
  assert.equal(r.moe, null);
  assert.deepEqual(await siblingsOf(dir, "dense_hf"), [], "no temporary left");

  const cfg = JSON.parse(await Deno.readTextFile(join(out, "config.json")));
  assert.equal(cfg.model_type, "gpt2");
  assert.deepEqual(cfg.architectures, ["GPT2LMHeadModel"]);
  assert.equal(cfg.n_positions, TINY_CONFIG.ctx);
  assert.equal(cfg.n_inner, TINY_CONFIG.d_ff);
  assert.equal(cfg.activation_function, "relu");
  assert.equal(cfg.layer_norm_epsilon, 1e-5);
  assert.equal(cfg.ssd.tokenizer, "bytes-v1");

  const names = [...(await readCheckpoint(join(out, "model.safetensors"))).tensors.keys()];
  assert.ok(!names.some((n) => n.startsWith("optim.")), "no optimizer moments");
  assert.ok(
    !names.some((n) => /\.h\.\d+\.attn\.(bias|masked_bias)$/.test(n)),
    "no attention buffers",
  );

  for (const ids of [[...encode(TEXT)], [...encode("jury sat")]]) {
    assertAllClose(
      await ssdLogits(ckpt, ids),
      await hfLogits(out, ids),
      { atol: 1e-4, rtol: 0 },
      "logits",
    );
  }
});

Deno.test("hf export: a model without biases and with GELU gets zero biases and gelu_new", async () => {
  const config: GPTConfig = {
    ...TINY_CONFIG,
    n_layer: 2,
    bias: false,
    activation: "gelu",
    d_ff: 48,
  };
  const ckpt = join(dir, "nobias.safetensors");
  await writeTinyCheckpoint(ckpt, { config, seed: 3 });
  const out = join(dir, "nobias_hf");
  await runExport({ checkpoint: ckpt, out, format: "hf" });
  const cfg = JSON.parse(await Deno.readTextFile(join(out, "config.json")));
  assert.equal(cfg.activation_function, "gelu_new");
  assert.equal(cfg.n_inner, 48);
  const { tensors } = await readCheckpoint(join(out, "model.safetensors"));
  const biases = [...tensors.keys()].filter((n) => n.endsWith(".bias"));
  // ln_1, c_attn, c_proj, ln_2, c_fc, c_proj per layer, and ln_f.
  assert.equal(biases.length, 6 * config.n_layer + 1);
  for (const n of biases) assert.ok(f32Data(tensors.get(n)!).every((v) => v === 0), n);
  assert.deepEqual(tensors.get("transformer.h.1.mlp.c_fc.bias")!.shape, [48]);
  assert.deepEqual(tensors.get("transformer.h.1.mlp.c_fc.weight")!.shape, [16, 48]);
  const ids = [...encode("Ab, c.\n")];
  assertAllClose(
    await ssdLogits(ckpt, ids),
    await hfLogits(out, ids),
    { atol: 1e-4, rtol: 0 },
    "logits",
  );
});

/** An MoE checkpoint: random tensors in stored order, a non-identity permutation, random routers. */
async function writeMoe(path: string): Promise<{ perms: number[][]; routers: Float32Array[] }> {
  const rng = new Rng(11);
  const E = 4;
  const perms: number[][] = [];
  const routers: Float32Array[] = [];
  const extra: Record<string, HostTensor> = {};
  for (let i = 0; i < TINY_CONFIG.n_layer; i++) {
    const p = Array.from({ length: TINY_CONFIG.d_ff }, (_, j) => j);
    for (let j = p.length - 1; j > 0; j--) {
      const k = rng.int(j + 1);
      [p[j], p[k]] = [p[k], p[j]];
    }
    perms.push(p);
    const w = rng.normalArray(E * TINY_CONFIG.d_model, 0.5);
    routers.push(w);
    extra[`transformer.h.${i}.mlp.router.weight`] = {
      dtype: "F32",
      shape: [E, TINY_CONFIG.d_model],
      data: w,
    };
  }
  await writeTinyCheckpoint(path, {
    seed: 5,
    optimizer: true,
    moe: { experts: E, top_k: 1, router: "centroid", method: "param", perms },
    extra,
  });
  return { perms, routers };
}

Deno.test("hf export of an MoE checkpoint: the dense form, moe.json and the routers", async () => {
  const ckpt = join(dir, "moe.safetensors");
  const { perms, routers } = await writeMoe(ckpt);
  const out = join(dir, "moe_hf");
  const r = await runExport({ checkpoint: ckpt, out, format: "hf" });
  assert.deepEqual(r.moe, { experts: 4, top_k: 1 });
  assert.deepEqual(await listDir(out), [
    "config.json",
    "model.safetensors",
    "moe.json",
    "router.safetensors",
  ]);

  const moe = JSON.parse(await Deno.readTextFile(join(out, "moe.json")));
  assert.equal(moe.experts, 4);
  assert.equal(moe.top_k, 1);
  assert.equal(moe.expert_size, TINY_CONFIG.d_ff / 4);
  assert.deepEqual(moe.perms, perms);
  const rt = (await readCheckpoint(join(out, "router.safetensors"))).tensors;
  assert.deepEqual([...rt.keys()], ["transformer.h.0.mlp.router.weight"]);
  assert.deepEqual(rt.get("transformer.h.0.mlp.router.weight")!.shape, [4, TINY_CONFIG.d_model]);
  assert.deepEqual(f32Data(rt.get("transformer.h.0.mlp.router.weight")!), routers[0]);

  // c_fc in stored order: HF's [C, d_ff] is the stored [d_ff, C] transposed, column j = stored row j.
  const src = (await readCheckpoint(ckpt)).tensors;
  const hf = (await readCheckpoint(join(out, "model.safetensors"))).tensors;
  assert.ok(![...hf.keys()].some((n) => n.includes("router")), "routers are not in the model");
  const C = TINY_CONFIG.d_model, F = TINY_CONFIG.d_ff;
  const stored = f32Data(src.get("transformer.h.0.mlp.c_fc.weight")!);
  const exported = f32Data(hf.get("transformer.h.0.mlp.c_fc.weight")!);
  for (let j = 0; j < F; j++) {
    for (let c = 0; c < C; c++) assert.equal(exported[c * F + j], stored[j * C + c]);
  }

  const ids = [...encode(TEXT)];
  const ref = await hfLogits(out, ids);
  assertAllClose(await ssdLogits(ckpt, ids), ref, { atol: 1e-4, rtol: 0 }, "dense logits");
  const all = await ssdLogits(ckpt, ids, { topK: 4, forceSparse: true });
  assertAllClose(all, ref, { atol: 1e-4, rtol: 0 }, "MoE logits at k = E");
});

// ---------------------------------------------------------------------------
// nanogpt

/** nanoGPT's model.py state-dict names and shapes (flash attention: no attn.bias buffer). */
function nanogptShapes(c: GPTConfig): Map<string, number[]> {
  const C = c.d_model, m = new Map<string, number[]>();
  m.set("transformer.wte.weight", [c.vocab, C]);
  m.set("transformer.wpe.weight", [c.ctx, C]);
  const lin = (name: string, o: number, i: number) => {
    m.set(name + ".weight", [o, i]);
    if (c.bias) m.set(name + ".bias", [o]);
  };
  const ln = (name: string) => lin(name, C, 0);
  for (let l = 0; l < c.n_layer; l++) {
    const p = `transformer.h.${l}.`;
    ln(p + "ln_1");
    lin(p + "attn.c_attn", 3 * C, C);
    lin(p + "attn.c_proj", C, C);
    ln(p + "ln_2");
    lin(p + "mlp.c_fc", c.d_ff, C);
    lin(p + "mlp.c_proj", C, c.d_ff);
  }
  ln("transformer.ln_f");
  m.set("lm_head.weight", [c.vocab, C]);
  for (const [k, s] of m) if (s[1] === 0) m.set(k, [C]);
  return m;
}

for (const bias of [true, false]) {
  Deno.test(`nanogpt export (bias ${bias}): nanoGPT's names and shapes, the checkpoint's values`, async () => {
    const config: GPTConfig = { ...TINY_CONFIG, bias, n_layer: 2 };
    const ckpt = join(dir, `ng_${bias}.safetensors`);
    await writeTinyCheckpoint(ckpt, { config, optimizer: true, seed: 9 });
    const out = join(dir, `ng_${bias}`);
    const r = await runExport({ checkpoint: ckpt, out, format: "nanogpt" });
    assert.equal(r.format, "nanogpt");
    const { tensors } = await readCheckpoint(join(out, "model.safetensors"));
    const want = nanogptShapes(config);
    assert.deepEqual([...tensors.keys()].sort(), [...want.keys()].sort());
    const src = (await readCheckpoint(ckpt)).tensors;
    for (const [name, shape] of want) {
      assert.deepEqual(tensors.get(name)!.shape, shape, name);
      const from = name === "lm_head.weight" ? "transformer.wte.weight" : name;
      assert.deepEqual(f32Data(tensors.get(name)!), f32Data(src.get(from)!), name);
    }
    const cfg = JSON.parse(await Deno.readTextFile(join(out, "config.json")));
    assert.deepEqual(
      Object.fromEntries(
        ["block_size", "vocab_size", "n_layer", "n_head", "n_embd", "dropout", "bias"].map((
          k,
        ) => [k, cfg[k]]),
      ),
      { block_size: 8, vocab_size: 256, n_layer: 2, n_head: 2, n_embd: 16, dropout: 0, bias },
    );
    assert.equal(cfg.ssd.d_ff, 32);
    assert.equal(cfg.ssd.activation, "relu");
    assert.match(cfg.ssd.note, /nn\.ReLU\(\)/);
    assert.match(cfg.ssd.note, /nn\.Linear\(n_embd, 32\)/, "d_ff 32 is not 4·16");
  });
}

Deno.test("nanogpt export of an MoE checkpoint: no routers in the model, moe.json beside it", async () => {
  const ckpt = join(dir, "moe_ng.safetensors");
  const { perms } = await writeMoe(ckpt);
  const out = join(dir, "moe_ng");
  await runExport({ checkpoint: ckpt, out, format: "nanogpt" });
  const { tensors } = await readCheckpoint(join(out, "model.safetensors"));
  assert.deepEqual([...tensors.keys()].sort(), [...nanogptShapes(TINY_CONFIG).keys()].sort());
  assert.deepEqual(JSON.parse(await Deno.readTextFile(join(out, "moe.json"))).perms, perms);
});

// ---------------------------------------------------------------------------
// The folder

Deno.test("runExport() refuses an existing folder unless force, and replaces it whole", async () => {
  const ckpt = join(dir, "f.safetensors");
  await writeTinyCheckpoint(ckpt);
  const out = join(dir, "existing");
  await Deno.mkdir(out);
  await Deno.writeTextFile(join(out, "keep.txt"), "mine");
  await assert.rejects(
    runExport({ checkpoint: ckpt, out, format: "hf" }),
    (e: Error) => e instanceof ConfigError && /already exists: --force/.test(e.message),
  );
  assert.deepEqual(await listDir(out), ["keep.txt"]);

  await runExport({ checkpoint: ckpt, out, format: "nanogpt", force: true });
  assert.deepEqual(await listDir(out), ["config.json", "model.safetensors"]);
  assert.deepEqual(await siblingsOf(dir, "existing"), [], "no temporary or old folder left");

  const file = join(dir, "a_file");
  await Deno.writeTextFile(file, "x");
  await assert.rejects(
    runExport({ checkpoint: ckpt, out: file, format: "hf", force: true }),
    (e: Error) => e instanceof ConfigError && /is an existing file/.test(e.message),
  );
});

Deno.test("runExport() writes nothing for a bad checkpoint or format", async () => {
  const ckpt = join(dir, "g.safetensors");
  await writeTinyCheckpoint(ckpt);
  const bad = join(dir, "mismatched.safetensors");
  await writeMismatched(ckpt, bad);
  const out = join(dir, "never");
  await assert.rejects(
    runExport({ checkpoint: bad, out, format: "hf" }),
    (e: Error) => e instanceof CheckpointError && /does not match the model config/.test(e.message),
  );
  await assert.rejects(
    runExport({ checkpoint: join(dir, "missing.safetensors"), out, format: "hf" }),
    CheckpointError,
  );
  await assert.rejects(
    // deno-lint-ignore no-explicit-any
    runExport({ checkpoint: ckpt, out, format: "onnx" as any }),
    (e: Error) =>
      e instanceof ConfigError && /Unknown export format "onnx": use hf or nanogpt/.test(e.message),
  );
  assert.ok(!(await listDir(dir)).some((n) => n === "never" || n.startsWith(".never.")));
});

Deno.test("paramShapes() is what the hf export maps (every stored tensor has a place)", () => {
  // A new parameter in the model would need a mapping; this fails first.
  const names = [...paramShapes(TINY_CONFIG).keys()].map((n) => n.replace(/\.h\.\d+\./, ".h.*."));
  assert.deepEqual([...new Set(names)].sort(), [
    "transformer.h.*.attn.c_attn.bias",
    "transformer.h.*.attn.c_attn.weight",
    "transformer.h.*.attn.c_proj.bias",
    "transformer.h.*.attn.c_proj.weight",
    "transformer.h.*.ln_1.bias",
    "transformer.h.*.ln_1.weight",
    "transformer.h.*.ln_2.bias",
    "transformer.h.*.ln_2.weight",
    "transformer.h.*.mlp.c_fc.bias",
    "transformer.h.*.mlp.c_fc.weight",
    "transformer.h.*.mlp.c_proj.bias",
    "transformer.h.*.mlp.c_proj.weight",
    "transformer.ln_f.bias",
    "transformer.ln_f.weight",
    "transformer.wpe.weight",
    "transformer.wte.weight",
  ]);
});
