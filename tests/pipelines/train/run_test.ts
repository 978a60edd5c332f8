import assert from "node:assert/strict";
import { join } from "node:path";
import { loadBrownDataset, unigramEntropyBits } from "../../../core/data.ts";
import { readHeader } from "../../../core/checkpoint.ts";
import { gpu } from "../../../gpu/runtime.ts";
import { resolveTrainConfig } from "../../../pipelines/train/config.ts";
import { runTrain } from "../../../pipelines/train/run.ts";
import { setupGpu } from "../../_helpers.ts";

await setupGpu();

async function readMetrics(dir: string): Promise<Record<string, number>[]> {
  const text = await Deno.readTextFile(join(dir, "metrics.jsonl"));
  return text.trim().split("\n").map((l) => JSON.parse(l));
}

Deno.test("runTrain() overfits a small repeated text: loss falls near zero", async () => {
  const dir = await Deno.makeTempDir();
  const text = "the quick brown fox jumps over the lazy dog. ".repeat(60);
  await Deno.writeTextFile(join(dir, "data.txt"), text);
  const config = await resolveTrainConfig({
    preset: "tiny",
    data: join(dir, "data.txt"),
    steps: 150,
    lr: 1e-2,
    min_lr: 1e-3,
    warmup: 10,
    weight_decay: 0,
    eval_every: 0,
    save_every: 0,
    out: join(dir, "run"),
  });
  const s = await runTrain(config);
  // A 45-byte period is fully predictable from a 32-byte context after its first bytes.
  assert.ok(s.final_loss < 0.15, `final train loss ${s.final_loss}`);
  assert.ok(s.val!.nll < 0.3, `val loss ${s.val!.nll}`);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("runTrain() --preset tiny on Brown for 200 steps beats the unigram entropy", async () => {
  const dir = await Deno.makeTempDir();
  const config = await resolveTrainConfig({ preset: "tiny", out: dir, save_every: 0 });
  assert.equal(config.steps, 200);
  const s = await runTrain(config);
  const unigramNats = unigramEntropyBits(loadBrownDataset().val) * Math.LN2;
  // The unigram model of Brown is ~3.08 nats/byte; a context model must be well below it.
  assert.ok(s.val!.nll < unigramNats - 0.4, `val ${s.val!.nll} vs unigram ${unigramNats}`);
  const metrics = await readMetrics(dir);
  const steps = metrics.filter((m) => m.loss !== undefined);
  assert.equal(steps.length, 200);
  for (
    const key of [
      "step",
      "phase",
      "loss",
      "lr",
      "grad_norm",
      "tokens_per_s",
      "ms_per_step",
      "act_ratio",
    ]
  ) assert.ok(key in steps[0], `metrics.jsonl lacks ${key}`);
  assert.ok(metrics.some((m) => m.val_loss !== undefined));
  // Only the documented fields (README, metrics.jsonl), and every line stamped with its time.
  const documented = new Set([
    ...["step", "phase", "loss", "lr", "grad_norm", "tokens_per_s", "ms_per_step", "ffn_flops"],
    ...["ffn_flops_dense", "act_ratio", "val_loss", "similarity", "expert_load", "time"],
    ...["event", "from", "to", "final", "val_bpb", "val_loss_moe", "top_k"],
  ]);
  for (const m of metrics) {
    for (const key of Object.keys(m)) assert.ok(documented.has(key), `undocumented ${key}`);
  }
  const times = metrics.map((m) => m.time);
  assert.ok(times.every((t, i) => t > 1.7e9 && (i === 0 || t >= times[i - 1])), "time");
  // ReLU FFNs: one ratio per layer, strictly between "all dead" and "all on".
  const ratios = steps[steps.length - 1].act_ratio as unknown as number[];
  assert.equal(ratios.length, config.n_layer);
  assert.ok(ratios.every((r) => r > 0.01 && r < 0.99), `act_ratio ${ratios}`);
  const header = await readHeader(join(dir, "final.safetensors"));
  assert.equal(header.metadata["ssd.format"], "1");
  assert.equal(JSON.parse(header.metadata["ssd.train"]).step, 200);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("resume from a checkpoint gives the same losses as an uninterrupted run", async () => {
  const dir = await Deno.makeTempDir();
  // A small text keeps the end-of-run evaluation cheap; Brown is covered above.
  const data = join(dir, "data.txt");
  await Deno.writeTextFile(data, (await Deno.readTextFile("README.md")).repeat(4));
  const base = {
    preset: "tiny",
    steps: 30,
    save_every: 10,
    eval_every: 0,
    eval_tokens: 512,
    data,
  };
  const full = await resolveTrainConfig({ ...base, out: join(dir, "full") });
  await runTrain(full);
  const part = await resolveTrainConfig({ ...base, out: join(dir, "part") });
  // Interrupt after step 10 (as Ctrl-C does), then resume from the run folder.
  const stop = new AbortController();
  const first = await runTrain(part, {
    signal: stop.signal,
    hooks: { onStep: (m) => m.step === 10 && stop.abort() },
  });
  assert.equal(first.interrupted, true);
  assert.equal(first.step, 10);
  await runTrain(part, { resume: join(dir, "part") });
  const a = (await readMetrics(join(dir, "full"))).filter((m) => m.loss !== undefined);
  const b = (await readMetrics(join(dir, "part"))).filter((m) => m.loss !== undefined);
  assert.equal(b.length, 30);
  for (let i = 10; i < 30; i++) {
    assert.equal(b[i].step, a[i].step);
    // Same data, same kernels, same order: bit-equal in practice; allow float noise.
    assert.ok(
      Math.abs(a[i].loss - b[i].loss) <= 1e-6,
      `step ${a[i].step}: ${a[i].loss} vs ${b[i].loss}`,
    );
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("runTrain() leaves no growth in live GPU buffers across a run and a resume", async () => {
  const dir = await Deno.makeTempDir();
  const before = gpu().pool.stats().liveBuffers;
  const config = await resolveTrainConfig({
    preset: "tiny",
    steps: 5,
    eval_every: 0,
    save_every: 2,
    eval_tokens: 256,
    val_tokens: 256,
    out: dir,
    data: "tests/pipelines/../../README.md",
  });
  await runTrain(config);
  assert.equal(gpu().pool.stats().liveBuffers, before);
  // Resumed (weights and moments loaded) and lengthened: still nothing left behind.
  await runTrain({ ...config, steps: 8 }, { resume: dir });
  assert.equal(gpu().pool.stats().liveBuffers, before);
  await Deno.remove(dir, { recursive: true });
});
