/**
 * Resuming runs in-process (`runTrain` with `resume`): a longer `--steps`
 * continues to the new end (metrics appended, the LR continuous), a finished
 * run is complete and left as it is, a moved folder continues where it is,
 * flags that cannot apply are refused and those that can are listed, and
 * runs never mix (a second run into a busy or used folder is refused).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { formatSummary } from "../../../cli/train.ts";
import { lrAt } from "../../../core/lr_schedule.ts";
import { resolveTrainConfig, type TrainConfig } from "../../../pipelines/train/config.ts";
import { readMetrics } from "../../../pipelines/train/metrics.ts";
import { resolveResume } from "../../../pipelines/train/resume.ts";
import { runTrain } from "../../../pipelines/train/run.ts";
import { setupGpu } from "../../_helpers.ts";

await setupGpu();

const DATA = await Deno.makeTempFile({ suffix: ".txt" });
await Deno.writeTextFile(DATA, (await Deno.readTextFile("README.md")).repeat(2));

function tiny(out: string, more: Record<string, unknown> = {}): Promise<TrainConfig> {
  return resolveTrainConfig({
    preset: "tiny",
    data: DATA,
    steps: 8,
    warmup: 2,
    save_every: 4,
    eval_every: 0,
    eval_tokens: 256,
    val_tokens: 256,
    out,
    ...more,
  });
}

/** Trains `config` and stops after `stopAt` steps (as Ctrl-C does). */
async function trainUntil(config: TrainConfig, stopAt: number): Promise<void> {
  const stop = new AbortController();
  await runTrain(config, {
    signal: stop.signal,
    hooks: { onStep: (m) => m.step === stopAt && stop.abort() },
  });
}

async function lines(dir: string): Promise<Record<string, unknown>[]> {
  const file = (await readMetrics(dir))!;
  assert.equal(file.partial, null);
  return file.lines;
}

const stepsOf = (ls: Record<string, unknown>[]) =>
  ls.filter((l) => "loss" in l).map((l) => l.step as number);

Deno.test("resume with more --steps from a mid-run checkpoint trains to the new end", async () => {
  const dir = await Deno.makeTempDir();
  const config = await tiny(dir);
  await trainUntil(config, 4);
  const before = await lines(dir);
  const plan = await resolveResume(dir, { steps: 12 });
  assert.deepEqual(plan.changes, ["steps 8 -> 12"]);
  const logged: string[] = [];
  const s = await runTrain(plan.config, { resume: dir, hooks: { log: (l) => logged.push(l) } });
  assert.equal(s.step, 12);
  assert.ok(logged.includes("resume is not exact: changed steps 8 -> 12"), logged.join("\n"));
  const after = await lines(dir);
  assert.deepEqual(stepsOf(after), Array.from({ length: 12 }, (_, i) => i + 1));
  assert.deepEqual(after.slice(0, before.length), before, "earlier lines kept");
  assert.equal(after.filter((l) => l.final).length, 1);
  // The LR decays without a jump: the first resumed step uses the rate the old plan had there.
  const lr = after.filter((l) => "loss" in l).map((l) => l.lr as number);
  const planned = { maxLr: config.lr, minLr: config.min_lr, warmup: 2, total: 8 };
  for (let i = 0; i < 5; i++) assert.equal(lr[i], lrAt(i, planned), `lr of step ${i + 1}`);
  for (let i = 3; i < 12; i++) assert.ok(lr[i] < lr[i - 1], `lr falls at step ${i + 1}`);
  assert.ok(Math.abs(lr[11] - config.min_lr) < 0.05 * config.lr, `last lr ${lr[11]}`);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("resume of a finished run: same steps is complete, more steps extends it", async () => {
  const dir = await Deno.makeTempDir();
  await runTrain(await tiny(dir));
  const text = await Deno.readTextFile(join(dir, "metrics.jsonl"));
  const same = await resolveResume(dir, {});
  assert.equal(same.complete, true);
  const s = await runTrain(same.config, { resume: dir });
  assert.equal(s.complete, true);
  assert.equal(await Deno.readTextFile(join(dir, "metrics.jsonl")), text, "nothing changed");
  const more = await resolveResume(dir, { steps: 10 });
  assert.equal((await runTrain(more.config, { resume: dir })).step, 10);
  const after = await lines(dir);
  assert.deepEqual(stepsOf(after), Array.from({ length: 10 }, (_, i) => i + 1));
  // The run goes on past step 8: only its new end is final.
  assert.deepEqual(after.filter((l) => l.final).map((l) => l.step), [10]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("resume of a moved run folder continues there, never in the original", async () => {
  const root = await Deno.makeTempDir();
  const a = join(root, "a");
  await trainUntil(await tiny(a), 4);
  const b = join(root, "b");
  await new Deno.Command("cp", { args: ["-r", a, b] }).output();
  const textA = await Deno.readTextFile(join(a, "metrics.jsonl"));
  const plan = await resolveResume(b, {});
  assert.equal(plan.config.out, b);
  assert.deepEqual(plan.changes, []);
  await runTrain(plan.config, { resume: b });
  assert.equal(await Deno.readTextFile(join(a, "metrics.jsonl")), textA);
  assert.deepEqual([...Deno.readDirSync(a)].map((e) => e.name).sort(), [
    "ckpt-4.safetensors",
    "metrics.jsonl",
  ]);
  assert.deepEqual(stepsOf(await lines(b)), [1, 2, 3, 4, 5, 6, 7, 8]);
  await Deno.remove(root, { recursive: true });
});

Deno.test("resume from an older checkpoint file branches: the folder then resumes the branch", async () => {
  const dir = await Deno.makeTempDir();
  const config = await tiny(dir, { save_every: 2 });
  await runTrain(config);
  // Back to step 4 of the finished run, stopped again at step 5.
  const stop = new AbortController();
  const logged: string[] = [];
  await runTrain(config, {
    resume: join(dir, "ckpt-4.safetensors"),
    signal: stop.signal,
    hooks: { onStep: (m) => m.step === 5 && stop.abort(), log: (l) => logged.push(l) },
  });
  assert.ok(logged.some((l) => /continues as a new line/.test(l)), logged.join("\n"));
  const plan = await resolveResume(dir, {});
  assert.match(plan.checkpoint.path, /ckpt-5\.safetensors$/);
  assert.equal(plan.complete, false);
  await runTrain(plan.config, { resume: dir });
  assert.deepEqual(stepsOf(await lines(dir)), [1, 2, 3, 4, 5, 6, 7, 8]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("resume refuses what cannot apply, applies --config and lists the changes", async () => {
  const dir = await Deno.makeTempDir();
  await trainUntil(await tiny(dir), 4);
  await assert.rejects(() => resolveResume(dir, { d_model: 64 }), /--d-model cannot change/);
  await assert.rejects(() => resolveResume(dir, { bias: false }), /--bias cannot change/);
  await assert.rejects(() => resolveResume(dir, { seed: 1 }), /--seed cannot change/);
  await assert.rejects(
    () => resolveResume(dir, { steps: 3 }),
    /--steps 3 is below the checkpoint's step 4: give --steps 4 or more/,
  );
  await assert.rejects(() => resolveResume(dir, { steps: 9, tokens: 99 }), /not both/);
  const file = join(dir, "more.json");
  await Deno.writeTextFile(file, JSON.stringify({ lr: 1e-3, eval_every: 2 }));
  const plan = await resolveResume(dir, {}, file);
  assert.deepEqual(plan.changes, ["eval_every 0 -> 2", "lr 0.003 -> 0.001"]);
  await Deno.writeTextFile(file, JSON.stringify({ n_layer: 3 }));
  await assert.rejects(() => resolveResume(dir, {}, file), /--n-layer cannot change/);
  await Deno.writeTextFile(file, JSON.stringify({ stepz: 3 }));
  await assert.rejects(() => resolveResume(dir, {}, file), /Unknown config key "stepz"/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a new run refuses a used or busy folder; --force replaces the old run", async () => {
  const dir = await Deno.makeTempDir();
  const config = await tiny(dir, { steps: 12, save_every: 0 });
  // A second training into the folder while the first runs: refused by the lock.
  let second: Promise<unknown> | null = null;
  const stop = new AbortController();
  await runTrain(config, {
    signal: stop.signal,
    hooks: {
      onStep: (m) => {
        if (m.step === 1) second = runTrain(config).catch((e) => e);
        if (m.step === 8) stop.abort();
      },
    },
  });
  assert.match(String(await second), /is in use by another training/);
  await assert.rejects(() => runTrain(config), /holds another run .*--force to replace it/);
  const s = await runTrain(await tiny(dir, { steps: 3, save_every: 0 }), { force: true });
  assert.equal(s.step, 3);
  assert.deepEqual(stepsOf(await lines(dir)), [1, 2, 3]);
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
    "final.safetensors",
    "metrics.jsonl",
  ]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a folder whose run saved no checkpoint is not offered for --resume", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(join(dir, "metrics.jsonl"), '{"step":1,"phase":"dense","loss":5}\n');
  const config = await tiny(dir, { steps: 3, save_every: 0 });
  await assert.rejects(
    () => runTrain(config),
    /holds another run \(metrics.jsonl\): it saved no checkpoint to resume; --force to replace it/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a run stopped before its first step saves nothing and leaves no folder", async () => {
  const root = await Deno.makeTempDir();
  const stop = new AbortController();
  stop.abort();
  const s = await runTrain(await tiny(join(root, "run")), { signal: stop.signal });
  assert.equal(s.interrupted, true);
  assert.deepEqual(s.checkpoints, []);
  assert.deepEqual([...Deno.readDirSync(root)], []);
  assert.match(formatSummary(s), /interrupted before the first step: nothing was saved/);
  assert.doesNotMatch(formatSummary(s), /--resume/);
  await Deno.remove(root, { recursive: true });
});
