/**
 * `ssd train` stopped by signals, as a subprocess: SIGINT, SIGTERM and SIGHUP
 * save a checkpoint and exit 130, 143 and 129; SIGINT during the final
 * evaluation stops the run (a checkpoint, no final one, exit 130).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readHeader } from "../../core/checkpoint.ts";
import { ROOT } from "./_ssd.ts";

/** Runs `ssd train ARGS`, sends `signal` once stderr matches `when`, and waits. */
async function trainAndSignal(args: string[], when: RegExp, signal: Deno.Signal) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli/main.ts", "train", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", SSD_NO_AUTOTUNE: "1", XDG_RUNTIME_DIR: "/tmp" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.getReader();
  const dec = new TextDecoder();
  let stderr = "";
  while (!when.test(stderr)) {
    const { value, done } = await reader.read();
    if (done) break;
    stderr += dec.decode(value);
  }
  child.kill(signal);
  for (let r = await reader.read(); !r.done; r = await reader.read()) stderr += dec.decode(r.value);
  const stdout = dec.decode(await new Response(child.stdout).arrayBuffer());
  return { code: (await child.status).code, stderr, stdout };
}

const LONG = ["--preset", "tiny", "--steps", "100000", "--eval-every", "0", "--save-every", "0"];

for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143], ["SIGHUP", 129]] as const) {
  Deno.test(`ssd train saves a checkpoint on ${signal} and exits ${code}`, async () => {
    const dir = await Deno.makeTempDir();
    const out = join(dir, "run");
    const r = await trainAndSignal([...LONG, "--out", out], /step \d+\//, signal);
    assert.equal(r.code, code, r.stderr);
    assert.match(r.stderr, new RegExp(`${signal}: stopping`));
    const saved = [...Deno.readDirSync(out)].map((e) => e.name).filter((n) =>
      n.startsWith("ckpt-")
    );
    assert.equal(saved.length, 1, `checkpoints: ${saved}`);
    const step = Number(/ckpt-(\d+)/.exec(saved[0])![1]);
    const train = JSON.parse((await readHeader(join(out, saved[0]))).metadata["ssd.train"]);
    assert.equal(train.step, step);
    assert.equal(typeof train.run_id, "string");
    assert.match(r.stdout, /interrupted: resume with --resume/);
    assert.equal(Deno.readDirSync(out).some((e) => e.name.endsWith(".lock")), false);
    await Deno.remove(dir, { recursive: true });
  });
}

Deno.test("ssd train stops on SIGINT during the final evaluation: a checkpoint, exit 130", async () => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "run");
  // Two steps, then a final evaluation long enough (seconds) to interrupt.
  const args = ["--preset", "tiny", "--steps", "2", "--eval-every", "0", "--val-tokens", "80000"];
  args.push("--out", out);
  const r = await trainAndSignal(args, /final evaluation/, "SIGINT");
  assert.equal(r.code, 130, r.stderr);
  const names = [...Deno.readDirSync(out)].map((e) => e.name).sort();
  assert.deepEqual(names, ["ckpt-2.safetensors", "metrics.jsonl"]);
  const text = await Deno.readTextFile(join(out, "metrics.jsonl"));
  assert.doesNotMatch(text, /"final"/);
  await Deno.remove(dir, { recursive: true });
});
