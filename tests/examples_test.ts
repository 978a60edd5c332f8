/**
 * The files in `examples/` stay usable: the config file resolves as
 * `ssd train --config` resolves it (unknown keys or bad values would throw),
 * and the pipeline script parses and calls only subcommands that exist.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { resolveTrainConfig } from "../pipelines/train/config.ts";

const EXAMPLES = fileURLToPath(new URL("../examples/", import.meta.url));

Deno.test("examples/small.json resolves to an SSD train config", async () => {
  const c = await resolveTrainConfig({}, `${EXAMPLES}small.json`);
  assert.equal(c.schedule, "ssd");
  assert.equal(c.d_ff % c.experts, 0);
  assert.ok(c.steps > c.monitor_every, "the run is long enough to check its partitions");
});

Deno.test("examples/pipeline.sh parses and uses real subcommands", async () => {
  const script = `${EXAMPLES}pipeline.sh`;
  const parse = await new Deno.Command("bash", { args: ["-n", script] }).output();
  assert.equal(parse.code, 0, new TextDecoder().decode(parse.stderr));
  const text = await Deno.readTextFile(script);
  const used = [...text.matchAll(/^\s*ssd (\w+)/gm)].map((m) => m[1]);
  assert.deepEqual(used, ["train", "profile", "moefy", "bench"]);
});
