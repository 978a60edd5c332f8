/**
 * Tests of core/train_state.ts: `validateTrainState()` accepts what `ssd train` saves
 * (and any part of it), and refuses unknown keys, wrong types, out-of-range values and
 * a step beyond the run, with one line naming the key; `metaJson()` applies it to every
 * reader of `ssd.train` in a real file.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  META_TRAIN,
  metaJson,
  readHeader,
  ssdMetadata,
  validateTrainState,
  writeCheckpoint,
} from "../../core/checkpoint.ts";
import { CheckpointError } from "../../core/errors.ts";

/** The shape of a state `ssd train` saves (the owners check schedule/accounting/monitor). */
const SAVED = Object.freeze({
  step: 20,
  tokens_seen: 5120,
  phase: "dense",
  phase_history: [{
    event: "switch",
    from: "dense",
    to: "sparse",
    step: 10,
    similarity: 0.9,
    reason: "stable",
  }],
  schedule: { version: 1 },
  accounting: {},
  monitor: {},
  sampler: { rng: [1, 2, 3, 4294967295], draws: 20, tokens: 9000, batch: 4, ctx: 64 },
  lr_schedule: { maxLr: 0.002, minLr: 0.0002, warmup: 5, total: 20 },
  optimizer_step: 20,
  tokenizer: "bytes-v1",
  data_source: "brown",
  config: { steps: 20, lr: 0.002 },
});

function rejects(state: unknown, ...parts: string[]): void {
  assert.throws(() => validateTrainState(state, "run/ckpt.safetensors"), (e) => {
    assert.ok(e instanceof CheckpointError, String(e));
    assert.ok(!e.message.includes("\n"), e.message);
    for (const p of ["run/ckpt.safetensors has a corrupt training state", ...parts]) {
      assert.ok(e.message.includes(p), `message lacks ${JSON.stringify(p)}: ${e.message}`);
    }
    return true;
  });
}

Deno.test("validateTrainState() accepts a saved state and any part of it", () => {
  validateTrainState(structuredClone(SAVED), "p");
  validateTrainState({}, "p");
  validateTrainState({ step: 0 }, "p");
  validateTrainState({ step: 20, config: { steps: 20 } }, "p");
});

Deno.test("validateTrainState() refuses steps out of range", () => {
  rejects({ ...SAVED, step: 1e9 }, "step 1000000000 is beyond the run's 20 steps");
  rejects({ ...SAVED, step: -1 }, '"step" is -1, not an integer >= 0');
  rejects({ ...SAVED, step: 2.5 }, '"step" is 2.5');
  rejects({ ...SAVED, step: "20" }, '"step" is "20"');
  rejects({ ...SAVED, tokens_seen: -5 }, '"tokens_seen" is -5');
  rejects({ ...SAVED, optimizer_step: null }, '"optimizer_step" is null');
  rejects({ ...SAVED, config: { steps: -2 } }, '"config" field "steps" is -2');
});

Deno.test("validateTrainState() refuses unknown keys and corrupted values inside the state", () => {
  rejects({ ...SAVED, stpe: 3 }, 'unknown key "stpe"');
  rejects({ ...SAVED, __proto__x: 1 }, 'unknown key "__proto__x"');
  rejects({ ...SAVED, phase: "sprase" }, '"phase" is "sprase", not "dense" or "sparse"');
  rejects({ ...SAVED, phase_history: [1] }, '"phase_history" is [1]');
  rejects({ ...SAVED, schedule: [] }, '"schedule" is [], not an object');
  rejects({ ...SAVED, tokenizer: 7 }, '"tokenizer" is 7, not a string');
  const sampler = (over: Record<string, unknown>) => ({
    ...SAVED,
    sampler: { ...SAVED.sampler, ...over },
  });
  rejects(sampler({ rng: [1, 2, 3] }), '"sampler" field "rng" is [1,2,3], not four 32-bit words');
  rejects(sampler({ rng: [1, 2, 3, 2 ** 32] }), "not four 32-bit words");
  rejects(sampler({ batch: 0 }), '"sampler" field "batch" is 0, not an integer >= 1');
  rejects({ ...SAVED, sampler: { draws: 1 } }, '"sampler" has no "rng"');
  rejects(
    { ...SAVED, lr_schedule: { ...SAVED.lr_schedule, maxLr: -1 } },
    '"lr_schedule" field "maxLr" is -1, not a finite number >= 0',
  );
  rejects([SAVED], '"ssd.train" is an array, not an object');
});

Deno.test("metaJson() checks ssd.train in a real file for every reader", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ssd_train_state_" });
  try {
    const path = join(dir, "c.safetensors");
    const write = (train: Record<string, unknown>) =>
      writeCheckpoint(path, { tensors: {}, metadata: ssdMetadata({ config: {}, train }) });
    await write(structuredClone(SAVED));
    assert.deepEqual(metaJson(await readHeader(path), META_TRAIN), SAVED);
    await write({ ...SAVED, step: 21 });
    const header = await readHeader(path);
    assert.throws(() => metaJson(header, META_TRAIN), /step 21 is beyond the run's 20 steps/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
