/**
 * `pipelines/train/metrics.ts`: the tolerant reader (complete lines parsed,
 * a torn last line reported, not fatal), the resume cut (later steps, events
 * at the resume step, the final line of a run now extended and a torn line
 * dropped), and a failed append naming the file and the cause.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { SsdError } from "../../../core/errors.ts";
import {
  METRICS_FILE,
  MetricsLog,
  parseMetricsText,
  readMetrics,
} from "../../../pipelines/train/metrics.ts";

const step = (n: number) => ({
  step: n,
  phase: "dense" as const,
  loss: 1 / n,
  lr: 1e-3,
  grad_norm: 1,
  tokens_per_s: 100,
  ms_per_step: 10,
  ffn_flops: 1,
  ffn_flops_dense: 1,
});
const event = (n: number) => ({
  event: "switch" as const,
  from: "dense" as const,
  to: "sparse" as const,
  step: n,
  similarity: 0.95,
  reason: "stable" as const,
});

Deno.test("parseMetricsText() keeps whole lines and reports a torn last line", () => {
  const text = JSON.stringify(step(1)) + "\n" + "not json\n" + '{"step": 2, "lo';
  const r = parseMetricsText(text);
  assert.deepEqual(r.lines, [step(1)]);
  assert.deepEqual(r.numbers, [1]);
  assert.deepEqual(r.bad, [2]);
  assert.equal(r.partial, '{"step": 2, "lo');
  assert.deepEqual(parseMetricsText(""), { lines: [], numbers: [], bad: [], partial: null });
});

Deno.test("MetricsLog writes nothing until the first flush, then whole lines", async () => {
  const dir = await Deno.makeTempDir();
  const log = await MetricsLog.open(dir, null);
  const t0 = Date.now() / 1000;
  log.add(step(1));
  assert.equal(await readMetrics(dir), null, "a run that never flushed leaves no file");
  await log.flush();
  log.add(step(2));
  log.add(event(2), 1764720000.1234);
  await log.flush();
  const r = (await readMetrics(dir))!;
  // Every line carries its Unix time in seconds, after the trainer's fields.
  const times = r.lines.map(({ time }) => time as number);
  assert.ok(times[0] >= t0 - 1 && times[0] <= Date.now() / 1000 + 1, `time ${times[0]}`);
  assert.equal(times[2], 1764720000.123);
  assert.equal(Object.keys(r.lines[0]).at(-1), "time");
  assert.deepEqual(r.lines.map(({ time: _, ...line }) => line), [step(1), step(2), event(2)]);
  assert.equal(r.partial, null);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("MetricsLog.open() on resume keeps the lines up to the saved step", async () => {
  const dir = await Deno.makeTempDir();
  const final = { step: 3, phase: "dense", val_loss: 1, val_bpb: 1.4, final: true };
  const lines = [step(1), step(2), event(2), step(3), final, step(4), event(4)];
  const text = lines.map((l) => JSON.stringify(l) + "\n").join("") + '{"step": 5, "ph';
  await Deno.writeTextFile(join(dir, METRICS_FILE), text);
  const dropped: string[] = [];
  const log = await MetricsLog.open(dir, 3, (w) => dropped.push(w));
  assert.deepEqual(dropped, ["3 lines the run writes again from step 3", "a partial last line"]);
  // A switch at step 2 came before step 3's line; one at the resume step is planned again,
  // and the run that goes on from step 3 writes a final line of its own at its end.
  assert.deepEqual((await readMetrics(dir))!.lines, [step(1), step(2), event(2), step(3)]);
  log.add(step(4));
  await log.flush();
  assert.equal((await readMetrics(dir))!.lines.length, 5);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("MetricsLog.flush() on a full disk fails with one line naming the file", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.symlink("/dev/full", join(dir, METRICS_FILE));
  const log = await MetricsLog.open(dir, null);
  log.add(step(1));
  await assert.rejects(
    () => log.flush(),
    (e: Error) =>
      e instanceof SsdError &&
      /^Cannot write .*metrics\.jsonl: No space left on device/.test(e.message),
  );
  await Deno.remove(dir, { recursive: true });
});
