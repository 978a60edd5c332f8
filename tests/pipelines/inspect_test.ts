/**
 * `runInspect()` in process: what it reports for an ssd checkpoint (config,
 * parameter count, tensors, optimizer summary, training state, MoE layout),
 * for a plain safetensors file, and its errors on missing / corrupt files.
 * No GPU is involved: inspect reads the header only.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { writeCheckpoint } from "../../core/checkpoint.ts";
import { paramCount, paramShapes } from "../../core/nn/config.ts";
import { CheckpointError } from "../../core/errors.ts";
import { runInspect } from "../../pipelines/inspect.ts";
import { MISMATCHES, writeMismatched } from "./_mismatched_checkpoint.ts";
import {
  TINY_CONFIG,
  TINY_TRAIN_STATE,
  truncateCopy,
  writeTinyCheckpoint,
} from "./_tiny_checkpoint.ts";

const dir = await Deno.makeTempDir({ prefix: "ssd_inspect_" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
const full = join(dir, "full.safetensors");
await writeTinyCheckpoint(full, { optimizer: true });

Deno.test("runInspect() reports config, parameter count and every tensor shape", async () => {
  const r = await runInspect({ checkpoint: full, all: false });
  assert.equal(r.format, "safetensors");
  assert.equal(r.ssd_format, "1");
  assert.deepEqual(r.config, { ...TINY_CONFIG });
  assert.equal(r.config_error, null);
  assert.deepEqual(r.mismatches, []);
  assert.equal(r.parameters, paramCount(TINY_CONFIG));
  assert.equal(r.tensor_parameters, paramCount(TINY_CONFIG));
  const shapes = paramShapes(TINY_CONFIG);
  assert.deepEqual(r.tensors.map((t) => t.name), [...shapes.keys()].sort());
  for (const t of r.tensors) {
    assert.deepEqual(t.shape, shapes.get(t.name), t.name);
    assert.equal(t.dtype, "F32");
    assert.equal(t.numel, t.shape.reduce((a, b) => a * b, 1));
    assert.equal(t.bytes, 4 * t.numel);
  }
  assert.equal(r.file_bytes, (await Deno.stat(full)).size);
  assert.equal(r.file_bytes, 8 + r.header_bytes + r.data_bytes);
  // The data section holds the weights and both moments of every weight.
  assert.equal(r.data_bytes, 3 * 4 * paramCount(TINY_CONFIG));
});

Deno.test("runInspect() summarises the optimizer moments, and lists them with all", async () => {
  const n = paramShapes(TINY_CONFIG).size;
  const short = await runInspect({ checkpoint: full, all: false });
  assert.equal(short.optimizer.count, 2 * n);
  assert.equal(short.optimizer.numel, 2 * paramCount(TINY_CONFIG));
  assert.equal(short.optimizer.bytes, 8 * paramCount(TINY_CONFIG));
  assert.equal(short.optimizer.tensors, undefined);
  const all = await runInspect({ checkpoint: full, all: true });
  assert.equal(all.optimizer.tensors!.length, 2 * n);
  assert.ok(all.optimizer.tensors!.every((t) => /^optim\.[mv]\./.test(t.name)));
  assert.equal(all.tensors.length, n, "moments never appear among the model tensors");
});

Deno.test("runInspect() reports the training state", async () => {
  const r = await runInspect({ checkpoint: full, all: false });
  assert.ok(r.train);
  assert.equal(r.train.step, TINY_TRAIN_STATE.step);
  assert.equal(r.train.tokens_seen, TINY_TRAIN_STATE.tokens_seen);
  assert.equal(r.train.phase, "dense");
  assert.deepEqual(r.train.phase_history, TINY_TRAIN_STATE.phase_history);
  assert.equal(r.train.data_source, TINY_TRAIN_STATE.data_source);
  assert.equal(r.train.tokenizer, "bytes-v1");
  assert.equal(r.train.raw.optimizer_step, 12);
  assert.equal(r.moe, null, "dense checkpoint has no MoE layout");
});

Deno.test("runInspect() shows the MoE layout and the router layers", async () => {
  const path = join(dir, "moe.safetensors");
  const E = 4;
  await writeTinyCheckpoint(path, {
    train: null,
    moe: { experts: E, top_k: 2, router: "centroid", layers: [{ perm: [] }] },
    extra: {
      "transformer.h.0.mlp.router.weight": {
        dtype: "F32",
        shape: [E, TINY_CONFIG.d_model],
        data: new Float32Array(E * TINY_CONFIG.d_model),
      },
    },
  });
  const r = await runInspect({ checkpoint: path, all: false });
  assert.deepEqual(r.moe, {
    experts: E,
    top_k: 2,
    router: "centroid",
    router_layers: [0],
    expert_size: TINY_CONFIG.d_ff / E,
  });
  assert.equal(r.train, null);
  assert.equal(r.tensor_parameters, paramCount(TINY_CONFIG) + E * TINY_CONFIG.d_model);
  assert.deepEqual(r.mismatches, [], "the router fits the MoE layout");
});

Deno.test("runInspect() lists every tensor that does not fit the stored config", async () => {
  const path = join(dir, "mismatch.safetensors");
  await writeMismatched(full, path);
  const r = await runInspect({ checkpoint: path, all: false });
  assert.equal(r.config_error, null);
  assert.deepEqual(r.mismatches, MISMATCHES);
  assert.ok(r.tensors.some((t) => t.name === "lm_head.weight"), "the file is still listed");
});

Deno.test("runInspect() accepts a plain safetensors file without ssd metadata", async () => {
  const path = join(dir, "foreign.safetensors");
  await writeCheckpoint(path, {
    tensors: {
      "a.weight": { dtype: "F32", shape: [3, 5], data: new Float32Array(15) },
      "b": { dtype: "U8", shape: [7], data: new Uint8Array(7) },
    },
    metadata: { "format": "pt" },
  });
  // writeCheckpoint always adds ssd.format: strip it by rewriting the header.
  const bytes = await Deno.readFile(path);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = new TextDecoder().decode(bytes.subarray(8, 8 + n));
  const stripped = header.replace(/"ssd\.format":"1",?/, "").replace(/,}/, "}");
  const padded = stripped.padEnd(n, " ");
  assert.equal(padded.length, n);
  bytes.set(new TextEncoder().encode(padded), 8);
  await Deno.writeFile(path, bytes);

  const r = await runInspect({ checkpoint: path, all: false });
  assert.equal(r.ssd_format, null);
  assert.equal(r.config, null);
  assert.equal(r.parameters, null);
  assert.equal(r.tensor_parameters, 15 + 7);
  assert.deepEqual(r.tensors.map((t) => [t.name, t.dtype, t.shape, t.bytes]), [
    ["a.weight", "F32", [3, 5], 60],
    ["b", "U8", [7], 7],
  ]);
  assert.deepEqual(r.other_metadata, { format: "pt" });
  assert.equal(r.train, null);
  assert.equal(r.moe, null);
});

Deno.test("runInspect() flags an invalid stored config instead of failing", async () => {
  const path = join(dir, "badcfg.safetensors");
  await writeTinyCheckpoint(path, { config: { ...TINY_CONFIG, n_head: 3 } });
  // paramShapes does not check divisibility, so the file is written; inspect must still show it.
  const r = await runInspect({ checkpoint: path, all: false });
  assert.match(r.config_error!, /d_model 16 is not divisible by n_head 3/);
  assert.equal(r.parameters, null);
  assert.equal(r.tensor_parameters, paramCount(TINY_CONFIG));
  assert.deepEqual(r.mismatches, [], "no expected shapes without a valid config");
});

Deno.test("runInspect() rejects missing, truncated and corrupt files with a CheckpointError", async () => {
  await assert.rejects(
    runInspect({ checkpoint: join(dir, "nope.safetensors"), all: false }),
    (e: Error) => e instanceof CheckpointError && /not found/.test(e.message),
  );
  const cut = join(dir, "cut.safetensors");
  await truncateCopy(full, cut, (await Deno.stat(full)).size - 100);
  await assert.rejects(
    runInspect({ checkpoint: cut, all: false }),
    (e: Error) => e instanceof CheckpointError && /truncated|ended|only/.test(e.message),
  );
  const head = join(dir, "head.safetensors");
  await truncateCopy(full, head, 5);
  await assert.rejects(runInspect({ checkpoint: head, all: false }), CheckpointError);
  const flipped = join(dir, "flipped.safetensors");
  const bytes = await Deno.readFile(full);
  bytes[8] ^= 0x20; // '{' → '[': the header is no longer a JSON object
  await Deno.writeFile(flipped, bytes);
  await assert.rejects(runInspect({ checkpoint: flipped, all: false }), CheckpointError);
  const text = join(dir, "text.safetensors");
  await Deno.writeTextFile(text, "hello, this is not a checkpoint at all\n");
  await assert.rejects(runInspect({ checkpoint: text, all: false }), CheckpointError);
});
