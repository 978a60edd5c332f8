/**
 * Matmul autotune: a short trial writes the cache file under
 * $XDG_CACHE_HOME/ssd/, keyed by adapter and Deno version; a later lookup
 * rereads it; a disabled autotune (setAutotune(false) or SSD_NO_AUTOTUNE=1)
 * uses the heuristic and times nothing. The trial here is tiny (two
 * candidates, 64³, 30 ms budget each).
 */
import assert from "node:assert/strict";
import {
  autotuneCachePath,
  autotuneEnabled,
  autotuneKey,
  autotuneMatmul,
  forgetMatmulChoice,
  heuristicMatmulConfig,
  matmulChoice,
  matmulConfig,
  setAutotune,
} from "../../gpu/autotune.ts";
import {
  configName,
  type MatmulConfig,
  SMALL_MATMUL_CONFIG,
  TEXTURE_MIN_MACS,
} from "../../gpu/kernels/matmul.ts";
import { setupGpu } from "../_helpers.ts";

const g = await setupGpu();
const cacheHome = await Deno.makeTempDir({ prefix: "ssd_autotune_" });
const savedXdg = Deno.env.get("XDG_CACHE_HOME");
Deno.env.set("XDG_CACHE_HOME", cacheHome);

const CANDIDATES: MatmulConfig[] = [
  { design: "register", tm: 4, tn: 8, wx: 8, wy: 8 },
  { design: "texture", tm: 8, tn: 8, wx: 8, wy: 8 },
];
const TRIAL = { candidates: CANDIDATES, shape: { m: 64, k: 64, n: 64 }, budgetMs: 30, force: true };

function readCacheFile(): {
  version: number;
  entries: Record<string, { matmul: MatmulConfig; gflops: Record<string, number> }>;
} {
  return JSON.parse(Deno.readTextFileSync(autotuneCachePath()));
}

Deno.test("autotuneCachePath() follows XDG_CACHE_HOME", () => {
  assert.equal(autotuneCachePath(), `${cacheHome}/ssd/autotune.json`);
});

Deno.test("disabled autotune uses the heuristic and writes nothing", async () => {
  setAutotune(false);
  assert.equal(autotuneEnabled(), false);
  const choice = matmulChoice(g);
  assert.equal(choice.source, "heuristic");
  assert.deepEqual(choice.config, heuristicMatmulConfig(g));
  // A software adapter gets register tiling (no workgroup memory).
  if (g.dev.summary.isFallback) assert.notEqual(choice.config.design, "shared");
  const tuned = await autotuneMatmul(g, TRIAL);
  assert.equal(tuned.source, "heuristic");
  assert.throws(() => Deno.statSync(autotuneCachePath()), Deno.errors.NotFound);
});

Deno.test("SSD_NO_AUTOTUNE=1 disables autotune in a fresh process", async () => {
  const code = `import { autotuneEnabled } from ${
    JSON.stringify(new URL("../../gpu/autotune.ts", import.meta.url).href)
  };
    console.log(autotuneEnabled());`;
  for (const [value, expected] of [["1", "false"], ["0", "true"]]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", code],
      env: { SSD_NO_AUTOTUNE: value },
    }).output();
    assert.equal(new TextDecoder().decode(out.stdout).trim(), expected);
  }
});

Deno.test("autotuneMatmul() times the candidates and writes the cache keyed by adapter and Deno", async () => {
  setAutotune(true);
  const choice = await autotuneMatmul(g, TRIAL);
  assert.equal(choice.source, "trial");
  assert.ok(CANDIDATES.some((c) => configName(c) === configName(choice.config)));
  const file = readCacheFile();
  const key = autotuneKey(g);
  assert.ok(key.includes(g.dev.summary.name), key);
  assert.ok(key.includes(Deno.version.deno), key);
  assert.deepEqual(Object.keys(file.entries), [key]);
  const entry = file.entries[key];
  assert.deepEqual(entry.matmul, choice.config);
  assert.deepEqual(Object.keys(entry.gflops).sort(), CANDIDATES.map(configName).sort());
  for (const rate of Object.values(entry.gflops)) assert.ok(rate > 0, `rate ${rate}`);
  // The winner has the highest measured rate.
  const best = Math.max(...Object.values(entry.gflops));
  assert.equal(entry.gflops[configName(choice.config)], best);
});

Deno.test("a later lookup rereads the cache file instead of running a trial", async () => {
  setAutotune(true);
  const file = readCacheFile();
  const key = autotuneKey(g);
  const other = CANDIDATES.find((c) => configName(c) !== configName(file.entries[key].matmul))!;
  // Edit the file: the lookup must return what the file now says.
  file.entries[key].matmul = other;
  Deno.writeTextFileSync(autotuneCachePath(), JSON.stringify(file));
  forgetMatmulChoice(g);
  const choice = matmulChoice(g);
  assert.equal(choice.source, "cache");
  assert.deepEqual(choice.config, other);
  const t0 = performance.now();
  const again = await autotuneMatmul(g, { ...TRIAL, force: false });
  assert.equal(again.source, "cache");
  assert.deepEqual(again.config, other);
  assert.ok(performance.now() - t0 < 1000, "no trial ran");
});

Deno.test("a cache entry for another adapter or a corrupt file is ignored", () => {
  setAutotune(true);
  const file = readCacheFile();
  const entry = file.entries[autotuneKey(g)];
  Deno.writeTextFileSync(
    autotuneCachePath(),
    JSON.stringify({ version: file.version, entries: { ["other adapter deno 0.0.0 v1"]: entry } }),
  );
  forgetMatmulChoice(g);
  assert.equal(matmulChoice(g).source, "heuristic");
  Deno.writeTextFileSync(autotuneCachePath(), "{ not json");
  forgetMatmulChoice(g);
  const choice = matmulChoice(g);
  assert.equal(choice.source, "heuristic");
  assert.deepEqual(choice.config, heuristicMatmulConfig(g));
});

Deno.test("matmulConfig() uses the small config under TEXTURE_MIN_MACS only for the texture design", () => {
  setAutotune(false);
  const chosen = matmulConfig(g);
  if (chosen.design === "texture") {
    assert.deepEqual(matmulConfig(g, TEXTURE_MIN_MACS - 1), SMALL_MATMUL_CONFIG);
    assert.deepEqual(matmulConfig(g, TEXTURE_MIN_MACS), chosen);
  } else {
    assert.deepEqual(matmulConfig(g, 1), chosen);
  }
});

Deno.test("autotune test cleanup", async () => {
  setAutotune(false);
  forgetMatmulChoice(g);
  if (savedXdg === undefined) Deno.env.delete("XDG_CACHE_HOME");
  else Deno.env.set("XDG_CACHE_HOME", savedXdg);
  await Deno.remove(cacheHome, { recursive: true });
});
