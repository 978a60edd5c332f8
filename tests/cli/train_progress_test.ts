/**
 * `ssd train`'s progress as a subprocess whose stderr is a pipe (as in CI):
 * plain lines of at most 80 columns with no `\r` or escape codes, the first
 * and last step, an ETA after the warm-up; with `--json` nothing at all on
 * stderr and one JSON document on stdout.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ssd } from "./_ssd.ts";

const TRAIN = ["train", "--preset", "tiny", "--steps", "40", "--eval-every", "10", "--force"];

Deno.test("ssd train in a pipe: plain progress lines within 80 columns, no escape codes", async () => {
  const dir = await Deno.makeTempDir();
  const r = await ssd([...TRAIN, "--out", join(dir, "run")]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr.includes("\r"), false, "a \\r in a pipe");
  assert.equal(r.stderr.includes("\x1b"), false, "an escape code in a pipe");
  const lines = r.stderr.split("\n");
  assert.equal(lines.pop(), "", "stderr ends with a newline");
  for (const l of lines) assert.ok([...l].length <= 80, `${[...l].length} columns: ${l}`);
  const steps = lines.filter((l) => /^step \d+\/40 /.test(l));
  assert.match(steps[0], /^step 1\/40 {2}loss \d+\.\d{4} .*tok\/s/);
  assert.match(steps.at(-1)!, /^step 40\/40 {2}loss \d+\.\d{4} {2}val \d+\.\d{4} /);
  // A line every 5% (2 steps) at most, not one per step.
  assert.ok(steps.length >= 3 && steps.length <= 22, `${steps.length} progress lines`);
  assert.doesNotMatch(steps[0], /ETA/, "no ETA from the first (warm-up) step");
  assert.ok(steps.some((l) => /ETA \d+(m\d\ds|s)$/.test(l)), "no ETA line");
  // Log lines (the config is long JSON) are wrapped, not lost.
  assert.ok(lines.some((l) => l.startsWith("config {")));
  assert.ok(lines.some((l) => /^saved .*final\.safetensors$/.test(l)));
  // Nothing of the progress on stdout: it holds the summary.
  assert.match(r.stdout, /^params +/);
  assert.doesNotMatch(r.stdout, /^step \d+\/40/m);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("ssd train --json: stderr stays empty, stdout is one JSON document", async () => {
  const dir = await Deno.makeTempDir();
  const r = await ssd([...TRAIN, "--out", join(dir, "run"), "--json"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  assert.equal(JSON.parse(r.stdout).step, 40);
  await Deno.remove(dir, { recursive: true });
});
