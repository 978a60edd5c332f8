/**
 * Corrupt checkpoints that pass the header checks, as real files through the real
 * loaders (`readHeader`, `readCheckpoint`) and through the commands that load them
 * (`inspect`, `eval`, `generate`, `moefy`, `train --resume` as subprocesses): NaN / Inf
 * weights, a FIFO given as a checkpoint, a damaged training state. Each must end in
 * one line naming the problem, a non-zero exit and no output file.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type HostTensor,
  readCheckpoint,
  readHeader,
  writeCheckpoint,
} from "../../core/checkpoint.ts";
import { CheckpointError } from "../../core/errors.ts";
import {
  listDir,
  sampleText,
  TINY_TRAIN_STATE,
  writeTinyCheckpoint,
} from "../pipelines/_tiny_checkpoint.ts";
import { assertOneErrorLine, ssd } from "../cli/_ssd.ts";

const dir = await Deno.makeTempDir({ prefix: "ssd_corrupt_ckpt_" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
const text = join(dir, "text.txt");
await Deno.writeTextFile(text, sampleText(4000));
const C_FC = "transformer.h.0.mlp.c_fc.weight";

/** A tiny checkpoint (with moments) whose tensor `name` has `value` at element `at`. */
async function poisoned(file: string, name: string, value: number, at = 0): Promise<string> {
  const path = join(dir, file);
  await writeTinyCheckpoint(path, { optimizer: true });
  const ck = await readCheckpoint(path);
  const t = ck.tensors.get(name)! as HostTensor & { data: Float32Array };
  t.data[at] = value;
  await writeCheckpoint(path, { tensors: ck.tensors, metadata: ck.metadata });
  return path;
}

/** Makes a FIFO; a watchdog opens it for writing after `ms`, so a reader stuck on it returns. */
async function fifo(file: string, ms = 20_000): Promise<{ path: string; stop: () => void }> {
  const path = join(dir, file);
  const made = await new Deno.Command("mkfifo", { args: [path] }).output();
  assert.ok(made.success, "mkfifo");
  const timer = setTimeout(() => {
    Deno.open(path, { write: true }).then((f) => f.close(), () => {});
  }, ms);
  return { path, stop: () => clearTimeout(timer) };
}

async function rejectsWith(fn: () => Promise<unknown>, message: string): Promise<void> {
  await assert.rejects(fn, (e) => {
    assert.ok(e instanceof CheckpointError, String(e));
    assert.ok(!e.message.includes("\n"), e.message);
    assert.ok(e.message.includes(message), e.message);
    return true;
  });
}

Deno.test("readCheckpoint() refuses NaN, Inf and -Inf in a weight, naming the tensor", async () => {
  for (const [i, value] of [NaN, Infinity, -Infinity].entries()) {
    const path = await poisoned(`bad_${i}.safetensors`, C_FC, value, 5);
    const msg = `Checkpoint ${path}: tensor ${C_FC} holds NaN or Inf values`;
    await rejectsWith(() => readCheckpoint(path), msg);
    // The reader of weights only (eval, generate) sees it too.
    await rejectsWith(() => readCheckpoint(path, { filter: (n) => !n.startsWith("optim.") }), msg);
    // The header alone is fine: inspect still shows the file.
    assert.ok((await readHeader(path)).tensors.has(C_FC));
    const raw = await readCheckpoint(path, { allowNonFinite: true });
    assert.ok(!Number.isFinite((raw.tensors.get(C_FC)!.data as Float32Array)[5]));
  }
});

Deno.test("readCheckpoint() refuses a NaN in an optimizer moment when it reads the moments", async () => {
  const name = "optim.v.transformer.wte.weight";
  const path = await poisoned("bad_moment.safetensors", name, NaN, 0);
  await rejectsWith(() => readCheckpoint(path), `tensor ${name} holds NaN or Inf values`);
  const weights = await readCheckpoint(path, { filter: (n) => !n.startsWith("optim.") });
  assert.ok(weights.tensors.has(C_FC), "eval never reads the moments, so it may load");
});

Deno.test("readHeader() and readCheckpoint() refuse a FIFO at once, without opening it", async () => {
  const f = await fifo("pipe.safetensors");
  try {
    for (const read of [readHeader, readCheckpoint]) {
      await rejectsWith(() => read(f.path), "is not a file (it is a pipe, socket or device)");
    }
  } finally {
    f.stop();
  }
});

Deno.test("ssd eval / generate / moefy refuse a NaN weight with one line and write nothing", async () => {
  const path = await poisoned("nan.safetensors", C_FC, NaN, 0);
  const out = join(dir, "nan_moe.safetensors");
  const before = await listDir(dir);
  for (
    const args of [
      ["eval", path, "--data", text],
      ["generate", path, "--prompt", "the", "--tokens", "4"],
      ["moefy", path, "--experts", "4", "-o", out, "--data", text],
    ]
  ) {
    const r = await ssd(args);
    const line = assertOneErrorLine(r, 1);
    assert.match(line, /tensor transformer\.h\.0\.mlp\.c_fc\.weight holds NaN or Inf values/);
    assert.equal(r.stdout, "", args[0]);
  }
  assert.deepEqual(await listDir(dir), before, "no output file");
});

Deno.test("ssd inspect / eval / generate / moefy refuse a FIFO with one line", async () => {
  const f = await fifo("cli_pipe.safetensors");
  try {
    for (
      const args of [
        ["inspect", f.path],
        ["eval", f.path, "--data", text],
        ["generate", f.path, "--prompt", "the"],
        ["moefy", f.path, "--experts", "4", "-o", join(dir, "pipe_moe.safetensors")],
      ]
    ) {
      const line = assertOneErrorLine(await ssd(args), 1);
      assert.match(line, /is not a file \(it is a pipe, socket or device\)/, args[0]);
    }
  } finally {
    f.stop();
  }
});

Deno.test("ssd train --resume and inspect refuse a damaged training state with one line", async () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    [
      "far_step",
      { ...TINY_TRAIN_STATE, step: 1e9, config: { steps: 20 } },
      /step 1000000000 is beyond the run's 20 steps/,
    ],
    ["negative_step", { ...TINY_TRAIN_STATE, step: -3 }, /"step" is -3, not an integer >= 0/],
    ["unknown_key", { ...TINY_TRAIN_STATE, stepp: 12 }, /unknown key "stepp"/],
    [
      "bad_sampler",
      {
        ...TINY_TRAIN_STATE,
        sampler: { rng: [1, 2, 3], draws: 1, tokens: 10, batch: 1, ctx: 8 },
      },
      /"sampler" field "rng" is \[1,2,3\], not four 32-bit words/,
    ],
  ];
  for (const [name, train, re] of cases) {
    const path = join(dir, `${name}.safetensors`);
    await writeTinyCheckpoint(path, { optimizer: true, train });
    const out = join(dir, `${name}_run`);
    for (const args of [["train", "--resume", path, "--out", out], ["inspect", path]]) {
      const line = assertOneErrorLine(await ssd(args), 1);
      assert.match(line, /has a corrupt training state/, `${name}: ${args[0]}`);
      assert.match(line, re, `${name}: ${args[0]}`);
    }
    assert.ok(!(await listDir(dir)).includes(`${name}_run`), "no run folder");
  }
});
