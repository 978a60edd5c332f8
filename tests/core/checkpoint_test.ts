/**
 * Tests of the ssd checkpoint API of core/checkpoint.ts: config checks, the `ssd.*`
 * metadata, optimizer tensor names, typed data access, and atomic saves under a
 * simulated crash, bad contents and racing writers.
 *
 * Pure host code: no GPU needed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  canonicalJson,
  CHECKPOINT_FORMAT,
  decodeCheckpoint,
  encodeCheckpoint,
  f32Data,
  type HostTensor,
  isCheckpointTemp,
  META_CONFIG,
  META_FORMAT,
  META_MOE,
  META_TRAIN,
  metaJson,
  optimMName,
  optimVName,
  parseOptimName,
  readCheckpoint,
  readHeader,
  readSsdMetadata,
  ssdMetadata,
  u32Data,
  validateAgainstConfig,
  withoutOptimizer,
  writeCheckpoint,
} from "../../core/checkpoint.ts";
import { CheckpointError } from "../../core/errors.ts";
import { assertCkptError, f32, listDir, sampleContents, withDir } from "./_checkpoint_fixtures.ts";

function expected(d: number, layers = 1): Map<string, number[]> {
  const m = new Map<string, number[]>([["transformer.wte.weight", [16, d]]]);
  for (let i = 0; i < layers; i++) m.set(`transformer.h.${i}.mlp.c_fc.weight`, [4 * d, d]);
  return m;
}

function headerFor(shapes: Map<string, number[]>, path = "run/final.safetensors") {
  const tensors = new Map<string, HostTensor>();
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    tensors.set(name, { dtype: "F32", shape, data: new Float32Array(n) });
  }
  return decodeCheckpoint(encodeCheckpoint({ tensors }), { label: path }).header;
}

function validateRejects(fn: () => void, ...parts: string[]): void {
  let err: unknown = null;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err !== null, `validation passed; expected ${parts.join(", ")}`);
  assertCkptError(err, "run/final.safetensors", "does not match the model config", ...parts);
}

Deno.test("validateAgainstConfig() accepts a matching checkpoint, with or without moments", () => {
  validateAgainstConfig(headerFor(expected(8)), expected(8));
  const withMoments = new Map(expected(8));
  for (const [name, shape] of expected(8)) {
    withMoments.set(optimMName(name), shape);
    withMoments.set(optimVName(name), shape);
  }
  validateAgainstConfig(headerFor(withMoments), expected(8), { optimizer: "required" });
});

Deno.test("validateAgainstConfig() reports wrong shapes, missing and extra tensors", () => {
  validateRejects(
    () => validateAgainstConfig(headerFor(expected(8)), expected(4)),
    'tensor "transformer.h.0.mlp.c_fc.weight" has shape [32, 8], expected [16, 4]',
    "(and 1 more)",
    "ssd inspect run/final.safetensors",
  );
  validateRejects(
    () => validateAgainstConfig(headerFor(expected(8, 1)), expected(8, 2)),
    'tensor "transformer.h.1.mlp.c_fc.weight" is missing (expected F32 [32, 8])',
  );
  validateRejects(
    () => validateAgainstConfig(headerFor(expected(8, 2)), expected(8, 1)),
    'unexpected tensor "transformer.h.1.mlp.c_fc.weight" [32, 8] (not in the model)',
  );
  const badMoment = new Map(expected(8));
  badMoment.set(optimVName("transformer.wte.weight"), [16, 4]);
  validateRejects(
    () => validateAgainstConfig(headerFor(badMoment), expected(8)),
    'tensor "optim.v.transformer.wte.weight" has shape [16, 4], expected [16, 8]',
  );
  const orphan = new Map(expected(8));
  orphan.set(optimMName("gone.weight"), [3]);
  validateRejects(
    () => validateAgainstConfig(headerFor(orphan), expected(8)),
    'unexpected tensor "optim.m.gone.weight"',
  );
  validateRejects(
    () => validateAgainstConfig(headerFor(expected(8)), expected(8), { optimizer: "required" }),
    'tensor "optim.m.transformer.h.0.mlp.c_fc.weight" is missing',
    "(and 3 more)",
  );
  validateRejects(
    () => validateAgainstConfig(headerFor(expected(8)), expected(8), { dtype: "U8" }),
    "has dtype F32, expected U8",
  );
});

// ---------------------------------------------------------------------------
// Metadata and names

Deno.test("ssdMetadata() and readSsdMetadata() round-trip config, moe and train state", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "m.safetensors");
    const train = {
      step: 3,
      lr_schedule: { maxLr: 0.1 + 0.2, minLr: 0, warmup: 1, total: 10 },
      sampler: { rng: [1, 2, 3, 4], draws: 3, tokens: 100, batch: 2, ctx: 4 },
      phase_history: [{ phase: "dense" }],
    };
    const config = { n_layer: 2, d_model: 8, activation: "relu" };
    const meta = ssdMetadata({ config, train });
    assert.equal(meta[META_FORMAT], CHECKPOINT_FORMAT);
    assert.equal(meta[META_MOE], undefined);
    assert.equal(meta[META_CONFIG], '{"activation":"relu","d_model":8,"n_layer":2}');
    await writeCheckpoint(path, { tensors: {}, metadata: meta });
    const got = readSsdMetadata(await readHeader(path));
    assert.deepEqual(got, { format: "1", config, moe: null, train });
    assert.equal((got.train as typeof train).lr_schedule.maxLr, 0.1 + 0.2);
  });
});

Deno.test("canonicalJson() sorts keys at every level and rejects non-JSON numbers", () => {
  assert.equal(
    canonicalJson({ b: [{ z: 1, a: null }], a: "x", u: undefined }),
    '{"a":"x","b":[{"a":null,"z":1}]}',
  );
  assert.equal(canonicalJson({ "2": 1, "10": 2, "a": 3 }), '{"10":2,"2":1,"a":3}');
  assert.throws(() => canonicalJson({ lr: NaN }), (e) => {
    assertCkptError(e, "value.lr = NaN");
    return true;
  });
  assert.throws(() => canonicalJson({ f: () => 1 }), CheckpointError);
});

Deno.test("metaJson() reports missing and malformed metadata entries", () => {
  const h = { path: "p.safetensors", metadata: { [META_CONFIG]: "{bad", [META_TRAIN]: "[1]" } };
  assert.equal(metaJson(h, META_MOE), null);
  assert.throws(() => metaJson({ ...h, metadata: {} }, META_CONFIG, true), (e) => {
    assertCkptError(e, "p.safetensors", 'no "ssd.config" metadata');
    return true;
  });
  assert.throws(() => metaJson(h, META_CONFIG), (e) => {
    assertCkptError(e, 'metadata "ssd.config" is not valid JSON');
    return true;
  });
  assert.throws(() => metaJson(h, META_TRAIN), (e) => {
    assertCkptError(e, 'metadata "ssd.train" is an array, not a JSON object');
    return true;
  });
});

Deno.test("optimMName() / optimVName() / parseOptimName() / withoutOptimizer() agree", () => {
  const p = "transformer.h.0.attn.c_attn.weight";
  assert.equal(optimMName(p), "optim.m." + p);
  assert.equal(optimVName(p), "optim.v." + p);
  assert.deepEqual(parseOptimName(optimMName(p)), { moment: "m", param: p });
  assert.deepEqual(parseOptimName(optimVName(p)), { moment: "v", param: p });
  assert.equal(parseOptimName(p), null);
  assert.equal(parseOptimName("optim.x." + p), null);
  const m = new Map([[p, 1], [optimMName(p), 2], [optimVName(p), 3], ["optimizer", 4]]);
  assert.deepEqual([...withoutOptimizer(m).keys()], [p, "optimizer"]);
});

// ---------------------------------------------------------------------------
// Atomic writes

Deno.test("writeCheckpoint() interrupted before rename leaves the old file intact and no temp", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "ckpt.safetensors");
    const v1 = sampleContents();
    await writeCheckpoint(path, v1);
    const before = await Deno.readFile(path);
    const v2 = sampleContents();
    v2.tensors.set("scalar", { dtype: "F32", shape: [], data: f32(99) });
    let tempSeen: string[] = [];
    let err: unknown = null;
    try {
      await writeCheckpoint(path, v2, {
        beforeRename: async () => {
          tempSeen = (await listDir(dir)).filter((n) => n !== "ckpt.safetensors");
          throw new Error("simulated crash");
        },
      });
    } catch (e) {
      err = e;
    }
    assertCkptError(err, path, "simulated crash", "previous checkpoint there is unchanged");
    // The temp was complete, in the same folder, with a recognisable name.
    assert.equal(tempSeen.length, 1);
    assert.ok(tempSeen[0].startsWith(".ckpt.safetensors.tmp-"), tempSeen[0]);
    assert.ok(isCheckpointTemp(tempSeen[0]));
    assert.deepEqual(await Deno.readFile(path), before);
    assert.deepEqual(await listDir(dir), ["ckpt.safetensors"]);
    // The same crash with no previous checkpoint leaves nothing.
    const fresh = join(dir, "new.safetensors");
    await assert.rejects(
      () =>
        writeCheckpoint(fresh, v2, {
          beforeRename: () => {
            throw new Error("boom");
          },
        }),
      CheckpointError,
    );
    assert.deepEqual(await listDir(dir), ["ckpt.safetensors"]);
    // Without the crash the new contents replace the old.
    await writeCheckpoint(path, v2);
    assert.deepEqual([...(await readCheckpoint(path)).tensors.get("scalar")!.data], [99]);
    assert.deepEqual(await listDir(dir), ["ckpt.safetensors"]);
  });
});

Deno.test("writeCheckpoint() rejects bad contents without touching the old file", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "c.safetensors");
    await writeCheckpoint(path, sampleContents());
    const before = await Deno.readFile(path);
    const bad = async (tensor: HostTensor, ...parts: string[]) => {
      const { tensors, metadata } = sampleContents();
      tensors.set("bad", tensor);
      let err: unknown = null;
      try {
        await writeCheckpoint(path, { tensors, metadata });
      } catch (e) {
        err = e;
      }
      assertCkptError(err, `Cannot save checkpoint ${path}`, ...parts);
    };
    await bad(
      { dtype: "F32", shape: [2, 2], data: f32(1, 2, 3) },
      "[2, 2] (4 elements) but 3 values",
    );
    await bad(
      { dtype: "F32", shape: [2], data: Uint32Array.from([1, 2]) },
      "is F32 but its data is Uint32Array",
    );
    await bad({ dtype: "U32", shape: [1], data: f32(1) }, "not Uint32Array");
    await bad({ dtype: "F32", shape: [-1], data: f32() }, "not non-negative integers");
    await bad({ dtype: "X" as "F32", shape: [1], data: f32(1) }, 'unknown dtype "X"');
    await assert.rejects(
      () =>
        writeCheckpoint(path, {
          tensors: { __metadata__: { dtype: "F32", shape: [], data: f32(0) } },
        }),
      /"__metadata__" is reserved/,
    );
    await assert.rejects(
      () => writeCheckpoint(path, { tensors: {}, metadata: { "ssd.format": "2" } }),
      /writes only version 1/,
    );
    assert.deepEqual(await Deno.readFile(path), before);
    assert.deepEqual(await listDir(dir), ["c.safetensors"]);
  });
});

Deno.test("writeCheckpoint() into a missing folder fails with a clear message", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "no", "such", "x.safetensors");
    let err: unknown = null;
    try {
      await writeCheckpoint(path, sampleContents());
    } catch (e) {
      err = e;
    }
    assertCkptError(
      err,
      `Cannot save checkpoint ${path}`,
      `create the folder ${join(dir, "no", "such")}`,
    );
    assert.deepEqual(await listDir(dir), []);
  });
});

Deno.test("writeCheckpoint() racing saves to one path leave one complete file", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "r.safetensors");
    const versions = [1, 2, 3, 4].map((v) => {
      const c = sampleContents();
      c.tensors.set("scalar", { dtype: "F32", shape: [], data: f32(v) });
      return c;
    });
    await Promise.all(versions.map((c) => writeCheckpoint(path, c)));
    const got = await readCheckpoint(path);
    const v = got.tensors.get("scalar")!.data[0] as number;
    assert.ok([1, 2, 3, 4].includes(v));
    assert.deepEqual(await Deno.readFile(path), encodeCheckpoint(versions[v - 1]));
    assert.deepEqual(await listDir(dir), ["r.safetensors"]);
  });
});

Deno.test("f32Data() / u32Data() narrow the data type and reject other dtypes", () => {
  const got = decodeCheckpoint(encodeCheckpoint(sampleContents()));
  const wte = got.tensors.get("transformer.wte.weight")!;
  assert.ok(f32Data(wte) instanceof Float32Array);
  assert.deepEqual([...u32Data(got.tensors.get("perm")!)], [3, 0, 0xffffffff, 1]);
  assert.throws(() => f32Data(got.tensors.get("perm")!, "perm"), (e) => {
    assertCkptError(e, '"perm" is U32, expected F32');
    return true;
  });
  assert.throws(() => u32Data(wte), CheckpointError);
});
