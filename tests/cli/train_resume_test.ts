/**
 * `ssd train` as a subprocess, around resume and run folders: a longer
 * `--steps` continues a run, a finished run is complete (exit 0, nothing
 * written), flags that cannot apply are refused in one line, a used folder
 * needs `--resume` or `--force`, and limits and conflicting flags are
 * refused before any folder is made.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { assertOneErrorLine, ROOT, ssd } from "./_ssd.ts";

const DATA = await Deno.makeTempFile({ suffix: ".txt" });
await Deno.writeTextFile(DATA, (await Deno.readTextFile(join(ROOT, "README.md"))).repeat(2));
const TINY = [
  "--preset",
  "tiny",
  "--data",
  DATA,
  "--eval-every",
  "0",
  "--eval-tokens",
  "256",
  "--val-tokens",
  "256",
];

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

async function metricSteps(out: string): Promise<number[]> {
  const text = await Deno.readTextFile(join(out, "metrics.jsonl"));
  return text.trim().split("\n").map((l) => JSON.parse(l)).filter((o) => "loss" in o).map((o) =>
    o.step
  );
}

Deno.test("ssd train --resume --steps N continues a finished run to N; the same N is complete", async () => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "run");
  const first = await ssd(["train", ...TINY, "--steps", "6", "--save-every", "3", "--out", out]);
  assert.equal(first.code, 0, first.stderr);
  // What a save killed mid-write leaves behind is removed by the next run in the folder.
  const temp = join(out, ".ckpt-6.safetensors.tmp-99999-0123456789ab");
  await Deno.writeTextFile(temp, "half a checkpoint");
  // Without --json, which keeps stderr empty: the resume's log lines are wanted here.
  const longer = await ssd(["train", "--resume", out, "--steps", "9"]);
  assert.equal(exists(temp), false, "temporary file of a killed save left");
  assert.equal(longer.code, 0, longer.stderr);
  assert.match(longer.stdout, /^steps +9 \(/m);
  assert.match(longer.stderr, /resume is not exact: changed steps 6 -> 9/);
  assert.deepEqual(await metricSteps(out), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const text = await Deno.readTextFile(join(out, "metrics.jsonl"));
  const again = await ssd(["train", "--resume", out, "--steps", "9"]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /is complete at step 9: nothing to do/);
  assert.equal(await Deno.readTextFile(join(out, "metrics.jsonl")), text);
  const fewer = await ssd(["train", "--resume", out, "--steps", "4"]);
  assert.match(assertOneErrorLine(fewer, 1), /--steps 4 is below the checkpoint's step 9/);
  const shape = await ssd(["train", "--resume", out, "--d-model", "64"]);
  assert.match(assertOneErrorLine(shape, 1), /--d-model cannot change when resuming/);
  const used = await ssd(["train", ...TINY, "--steps", "2", "--out", out]);
  assert.match(assertOneErrorLine(used, 1), /holds another run .*--resume .* --force/);
  const forced = await ssd(["train", ...TINY, "--steps", "2", "--out", out, "--force"]);
  assert.equal(forced.code, 0, forced.stderr);
  assert.deepEqual(await metricSteps(out), [1, 2]);
  await Deno.remove(dir, { recursive: true });
});

const BAD: [string, string[], RegExp][] = [
  [
    "a batch over the adapter's buffer limit",
    ["--batch-size", "100000000"],
    /--batch-size 100000000 with --ctx 32 needs .* over this adapter's max\w+ of .*: --batch-size \d+ or less fits/,
  ],
  ["a context over the buffer limit", ["--ctx", "1000000"], /--ctx \d+ or less does/],
  [
    "--tokens with --steps",
    ["--tokens", "5000", "--steps", "10"],
    /Give --tokens or --steps, not both/,
  ],
  [
    "an output folder that cannot be made",
    ["--out", "/dev/full/run"],
    /^ssd: Cannot create \/dev\/full\/run: /,
  ],
];

for (const [what, args, message] of BAD) {
  Deno.test(`ssd train refuses ${what} in one line before making a folder`, async () => {
    const dir = await Deno.makeTempDir();
    const out = join(dir, "run");
    const r = await ssd(["train", ...TINY, "--out", out, ...args]);
    assert.match(assertOneErrorLine(r, 1), message);
    assert.equal(exists(out), false, "output folder created");
    await Deno.remove(dir, { recursive: true });
  });
}

Deno.test("ssd train --help states the resume rule", async () => {
  const r = await ssd(["train", "--help"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout.replace(/\s+/g, " "), /beyond the planned length it extends the run/);
  assert.match(r.stdout, /--force/);
});
