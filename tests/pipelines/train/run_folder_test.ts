/**
 * `pipelines/train/run_folder.ts`: the checkpoint a folder resumes from is
 * chosen by the run identity and step inside the checkpoints (not by file
 * name); the lock refuses a second training and replaces a dead one's; a
 * new run refuses another run's files unless forced; temporaries of killed
 * saves are cleaned.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { META_TRAIN, writeCheckpoint } from "../../../core/checkpoint.ts";
import { ConfigError } from "../../../core/errors.ts";
import {
  LOCK_FILE,
  lockFolder,
  newestRunCheckpoint,
  openRunFolder,
  prepareFolder,
} from "../../../pipelines/train/run_folder.ts";

/** A checkpoint file holding only `ssd.train` {step, run_id}, written at time `t` (s). */
async function fakeCheckpoint(dir: string, name: string, step: number, runId: string, t: number) {
  const path = join(dir, name);
  await writeCheckpoint(path, {
    tensors: { w: { dtype: "F32", shape: [1], data: new Float32Array([0]) } },
    metadata: { [META_TRAIN]: JSON.stringify({ step, run_id: runId }) },
  });
  await Deno.utime(path, t, t);
  return path;
}

const opts = { resuming: false, force: false, metricsFile: "metrics.jsonl" };

Deno.test("newestRunCheckpoint() follows the run that wrote last, not the file name", async () => {
  const dir = await Deno.makeTempDir();
  // Run A finished (final at 200); run B then wrote ckpt-100 and ckpt-150 into the folder.
  await fakeCheckpoint(dir, "final.safetensors", 200, "A", 1000);
  await fakeCheckpoint(dir, "ckpt-100.safetensors", 100, "B", 2000);
  const b150 = await fakeCheckpoint(dir, "ckpt-150.safetensors", 150, "B", 3000);
  const best = (await newestRunCheckpoint(dir))!;
  assert.equal(best.path, b150);
  assert.equal(best.step, 150);
  assert.equal(best.run_id, "B");
  // Within one run the final checkpoint wins a tie on the step.
  const final = await fakeCheckpoint(dir, "final.safetensors", 150, "B", 2500);
  assert.equal((await newestRunCheckpoint(dir))!.path, final);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("lockFolder() refuses a live holder and replaces a dead one's lock", async () => {
  const dir = await Deno.makeTempDir();
  const lock = await lockFolder(dir);
  assert.equal((await Deno.readTextFile(join(dir, LOCK_FILE))).trim(), String(Deno.pid));
  await assert.rejects(() => lockFolder(dir), /in use by another training \(process \d+\)/);
  lock.release();
  // A process that has exited: its pid is free, so the lock is stale.
  const dead = new Deno.Command("true").spawn();
  await dead.status;
  await Deno.writeTextFile(join(dir, LOCK_FILE), `${dead.pid}\n`);
  const again = await lockFolder(dir);
  assert.equal((await Deno.readTextFile(join(dir, LOCK_FILE))).trim(), String(Deno.pid));
  again.release();
  assert.deepEqual([...Deno.readDirSync(dir)], []);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("prepareFolder() refuses another run's files unless forced; cleans temporaries", async () => {
  const dir = await Deno.makeTempDir();
  await fakeCheckpoint(dir, "ckpt-10.safetensors", 10, "A", 1000);
  await Deno.writeTextFile(join(dir, "metrics.jsonl"), "{}\n");
  await Deno.writeTextFile(join(dir, ".ckpt-20.safetensors.tmp-4242-0123456789ab"), "half");
  await Deno.writeTextFile(join(dir, "notes.txt"), "mine");
  await assert.rejects(
    () => prepareFolder(dir, opts),
    (e: Error) => e instanceof ConfigError && /--resume .* to continue it, --force/.test(e.message),
  );
  await prepareFolder(dir, { ...opts, resuming: true });
  const names = () => [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  assert.deepEqual(names(), ["ckpt-10.safetensors", "metrics.jsonl", "notes.txt"]);
  await prepareFolder(dir, { ...opts, force: true });
  assert.deepEqual(names(), ["notes.txt"], "only the old run's files are removed");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("openRunFolder() removes a folder it created when the run left nothing", async () => {
  const root = await Deno.makeTempDir();
  const dir = join(root, "run");
  const f = await openRunFolder(dir, opts);
  f.release();
  assert.deepEqual([...Deno.readDirSync(root)], []);
  await Deno.remove(root, { recursive: true });
});
