/**
 * Per-adapter choice of the matmul kernel design and tile shape.
 *
 * `autotuneMatmul()` times a few candidate configs on a representative
 * shape (each for a fraction of a second, many iterations per host wait)
 * and stores the winner in a JSON cache file keyed by adapter, Deno version
 * and the kernels' version, so later processes skip the trial:
 * `$XDG_CACHE_HOME/ssd/autotune.json`, else `~/.cache/ssd/autotune.json`.
 *
 * `matmulConfig()` is what ops call on every matmul (synchronously): the
 * config found by a trial in this process, else the cached one, else the
 * heuristic (register tiling on fallback / software adapters, through
 * read-only storage textures where WGSL has them; workgroup-memory tiling
 * on real GPUs). With autotune off (`setAutotune(false)`, the CLI's
 * `--no-autotune`, or env `SSD_NO_AUTOTUNE=1`) it is always the heuristic,
 * and `autotuneMatmul()` runs no trial. Nothing here runs a trial by itself:
 * the pipelines call `autotuneMatmul()` once at start, so test runs never
 * pay for one.
 */
import {
  configName,
  DEFAULT_MATMUL_CONFIGS,
  MATMUL_CANDIDATES,
  type MatmulConfig,
  matmulKernel,
  type MatmulShape,
  SMALL_M_MATMUL_CONFIG,
  SMALL_M_ROWS,
  SMALL_MATMUL_CONFIG,
  TEXTURE_MIN_MACS,
  textureDesignSupported,
} from "./kernels/matmul.ts";
import type { Gpu } from "./runtime.ts";

/** Bump when kernels change enough to invalidate cached choices. */
export const AUTOTUNE_VERSION = 1;

/** Default trial shape: M×K×N, big enough to dwarf dispatch overhead. */
export const AUTOTUNE_SHAPE: Readonly<MatmulShape> = Object.freeze({ m: 512, k: 512, n: 512 });

/** Default wall-clock budget per candidate, in milliseconds. */
export const AUTOTUNE_BUDGET_MS = 250;

/** Where a matmul config came from. */
export type ChoiceSource = "trial" | "cache" | "heuristic";

/** The config ops use, and how it was chosen. */
export interface MatmulChoice {
  /** Design and tile shape. */
  config: MatmulConfig;
  /** Trial in this process, cache file, or heuristic. */
  source: ChoiceSource;
  /** GFLOP/s of each timed candidate (trial and cache only). */
  gflops?: Record<string, number>;
}

/** One entry of the cache file. */
interface CacheEntry {
  matmul: MatmulConfig;
  gflops: Record<string, number>;
  shape: [number, number, number];
  date: string;
}

interface CacheFile {
  version: number;
  entries: Record<string, CacheEntry>;
}

let enabledOverride: boolean | null = null;
const memo = new WeakMap<GPUDevice, MatmulChoice>();

/** Turns autotuning on or off for this process (overrides `SSD_NO_AUTOTUNE`). */
export function setAutotune(enabled: boolean): void {
  enabledOverride = enabled;
}

/** Whether autotuning is on: `setAutotune` if called, else not `SSD_NO_AUTOTUNE=1`. */
export function autotuneEnabled(): boolean {
  if (enabledOverride !== null) return enabledOverride;
  return envGet("SSD_NO_AUTOTUNE") !== "1";
}

function envGet(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    // No --allow-env: behave as if unset.
    return undefined;
  }
}

/** Path of the autotune cache file. */
export function autotuneCachePath(): string {
  const xdg = envGet("XDG_CACHE_HOME");
  const home = envGet("HOME") ?? envGet("USERPROFILE") ?? ".";
  const dir = xdg && xdg.length > 0 ? xdg : `${home}/.cache`;
  return `${dir}/ssd/autotune.json`;
}

/** Cache key of the adapter in use: adapter name, backend, Deno and kernel versions. */
export function autotuneKey(g: Gpu): string {
  const s = g.dev.summary;
  return `${s.name} [${s.vendor}/${s.backend}] deno ${Deno.version.deno} v${AUTOTUNE_VERSION}`;
}

/** The config used when autotune is off or has no answer for this adapter. */
export function heuristicMatmulConfig(g: Gpu): MatmulConfig {
  if (!g.dev.summary.isFallback) return DEFAULT_MATMUL_CONFIGS.shared;
  return textureDesignSupported()
    ? DEFAULT_MATMUL_CONFIGS.texture
    : DEFAULT_MATMUL_CONFIGS.register;
}

function readCache(): CacheFile | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(autotuneCachePath());
  } catch {
    return null;
  }
  try {
    const parsed = JSON.parse(text) as CacheFile;
    if (parsed?.version !== AUTOTUNE_VERSION || typeof parsed.entries !== "object") return null;
    return parsed;
  } catch {
    // A corrupt cache is ignored and rewritten by the next trial.
    return null;
  }
}

/** A config from the cache file is used only if it is one a trial could have picked. */
function validConfig(c: unknown): c is MatmulConfig {
  if (!c || typeof c !== "object") return false;
  const o = c as Record<string, unknown>;
  const int = (k: string, max: number) =>
    Number.isInteger(o[k]) && (o[k] as number) > 0 && (o[k] as number) <= max;
  const designOk = o.design === "register" || o.design === "texture" ||
    (o.design === "shared" && (o.bk === undefined || int("bk", 64)));
  return designOk && int("tm", 32) && int("tn", 32) && (o.tn as number) % 4 === 0 &&
    int("wx", 256) && int("wy", 256) && (o.wx as number) * (o.wy as number) <= 256;
}

/** The cached choice for this adapter, if any. */
export function cachedMatmulChoice(g: Gpu): MatmulChoice | null {
  const entry = readCache()?.entries[autotuneKey(g)];
  if (!entry || !validConfig(entry.matmul)) return null;
  if (entry.matmul.design === "texture" && !textureDesignSupported()) return null;
  return { config: entry.matmul, source: "cache", gflops: entry.gflops };
}

function writeCache(g: Gpu, entry: CacheEntry): void {
  const path = autotuneCachePath();
  const dir = path.slice(0, path.lastIndexOf("/"));
  const file = readCache() ?? { version: AUTOTUNE_VERSION, entries: {} };
  file.entries[autotuneKey(g)] = entry;
  try {
    Deno.mkdirSync(dir, { recursive: true });
    // Write then rename, so a concurrent reader never sees half a file.
    const tmp = `${path}.${Deno.pid}.tmp`;
    Deno.writeTextFileSync(tmp, JSON.stringify(file, null, 2) + "\n");
    Deno.renameSync(tmp, path);
  } catch {
    // An unwritable cache only costs a new trial next time.
  }
}

/**
 * The matmul config to use now (synchronous; ops call it per matmul):
 * heuristic when autotune is off, else this process's trial, the cache
 * file, or the heuristic.
 */
export function matmulChoice(g: Gpu): MatmulChoice {
  if (!autotuneEnabled()) return { config: heuristicMatmulConfig(g), source: "heuristic" };
  const known = memo.get(g.device);
  if (known) return known;
  const choice = cachedMatmulChoice(g) ?? { config: heuristicMatmulConfig(g), source: "heuristic" };
  memo.set(g.device, choice);
  return choice;
}

/**
 * The config of `matmulChoice` for a matmul of `macs` multiply-adds (all
 * batches) and `rows` output rows: a texture-design choice gives way to
 * `SMALL_MATMUL_CONFIG` below `TEXTURE_MIN_MACS`, where dispatch overhead
 * dominates, and any choice to `SMALL_M_MATMUL_CONFIG` for at most
 * `SMALL_M_ROWS` rows.
 */
export function matmulConfig(g: Gpu, macs = Infinity, rows = Infinity): MatmulConfig {
  if (rows <= SMALL_M_ROWS) return SMALL_M_MATMUL_CONFIG;
  const config = matmulChoice(g).config;
  return config.design === "texture" && macs < TEXTURE_MIN_MACS ? SMALL_MATMUL_CONFIG : config;
}

/** Forgets this process's choice, so the next `matmulChoice` rereads the cache. */
export function forgetMatmulChoice(g: Gpu): void {
  memo.delete(g.device);
}

/** Options of `autotuneMatmul`. */
export interface AutotuneOptions {
  /** Configs to time (default `MATMUL_CANDIDATES`). */
  candidates?: readonly MatmulConfig[];
  /** Trial shape (default `AUTOTUNE_SHAPE`). */
  shape?: MatmulShape;
  /** Wall-clock budget per candidate in ms (default `AUTOTUNE_BUDGET_MS`). */
  budgetMs?: number;
  /** Run the trial even when the cache has an answer. */
  force?: boolean;
}

/**
 * Times every candidate on `shape` (about `budget` ms each, see
 * `autotuneMatmul`) and returns the fastest with every GFLOP/s measured.
 */
async function trialMatmul(
  g: Gpu,
  candidates: readonly MatmulConfig[],
  shape: MatmulShape,
  budget: number,
): Promise<{ best: MatmulConfig; gflops: Record<string, number> }> {
  const { m, k, n } = shape;
  const batch = shape.batch ?? 1;
  const rnd = (len: number) =>
    Float32Array.from({ length: len }, (_, i) => ((i * 7919) % 97) / 97 - 0.5);
  const a = g.pool.acquire(Math.max(4, batch * m * k * 4), "autotune.a");
  const b = g.pool.acquire(Math.max(4, batch * k * n * 4), "autotune.b");
  const c = g.pool.acquire(Math.max(4, batch * m * n * 4), "autotune.c");
  g.recorder.upload(a, rnd(batch * m * k));
  g.recorder.upload(b, rnd(batch * k * n));
  const flop = 2 * batch * m * k * n;
  const small: MatmulShape = {
    ...shape,
    m: Math.ceil(m / 2),
    k: Math.ceil(k / 2),
    n: Math.ceil(n / 2),
  };
  const smallFlop = 2 * batch * small.m * small.k * small.n;
  const gflops: Record<string, number> = {};
  let best: MatmulConfig = candidates[0];
  let bestRate = -1;
  /** Best GFLOP/s of `config`; stops early when hopeless next to `bestRate`. */
  const time = async (config: MatmulConfig): Promise<number> => {
    // Compile, then pre-check on an eighth of the work: a candidate more
    // than 8× slower than the best so far is not worth a full-size run.
    matmulKernel(g, c, a, b, null, small, config);
    await g.recorder.sync();
    let t0 = performance.now();
    matmulKernel(g, c, a, b, null, small, config);
    await g.recorder.sync();
    let rate = smallFlop / (Math.max(performance.now() - t0, 1e-3) * 1e6);
    if (rate * 8 < bestRate) return rate;
    // Double the iterations per host wait until the budget is spent.
    let spent = 0;
    for (let iters = 1; spent < budget; iters *= 2) {
      t0 = performance.now();
      for (let i = 0; i < iters; i++) matmulKernel(g, c, a, b, null, shape, config);
      await g.recorder.sync();
      const ms = Math.max(performance.now() - t0, 1e-3);
      spent += ms;
      rate = Math.max(rate, (flop * iters) / (ms * 1e6));
      if (ms > budget / 2 || rate * 8 < bestRate) break;
    }
    return rate;
  };
  try {
    for (const config of candidates) {
      const rate = await time(config);
      gflops[configName(config)] = rate;
      if (rate > bestRate) {
        bestRate = rate;
        best = config;
      }
    }
    // Other processes share the machine: time the two leaders once more.
    const leaders = candidates.filter((x) => gflops[configName(x)] > 0)
      .sort((x, y) => gflops[configName(y)] - gflops[configName(x)]).slice(0, 2);
    if (leaders.length > 1) {
      for (const config of leaders) {
        const name = configName(config);
        gflops[name] = Math.max(gflops[name], await time(config));
      }
      best = leaders.reduce((x, y) => (gflops[configName(y)] > gflops[configName(x)] ? y : x));
    }
  } finally {
    g.pool.release(a);
    g.pool.release(b);
    g.pool.release(c);
  }
  return { best, gflops };
}

/**
 * Picks the matmul config for this adapter: the cached answer if there is
 * one (unless `force`), else a timed trial whose winner is cached. Returns
 * the heuristic without timing anything when autotune is off.
 */
export async function autotuneMatmul(g: Gpu, opts: AutotuneOptions = {}): Promise<MatmulChoice> {
  if (!autotuneEnabled()) return { config: heuristicMatmulConfig(g), source: "heuristic" };
  if (!opts.force) {
    const cached = memo.get(g.device)?.source === "trial"
      ? memo.get(g.device)!
      : cachedMatmulChoice(g);
    if (cached) {
      memo.set(g.device, cached);
      return cached;
    }
  }
  const shape = opts.shape ?? AUTOTUNE_SHAPE;
  const budget = opts.budgetMs ?? AUTOTUNE_BUDGET_MS;
  const candidates = (opts.candidates ?? MATMUL_CANDIDATES).filter((c) =>
    c.design !== "texture" || textureDesignSupported()
  );
  if (candidates.length === 0) throw new Error("autotuneMatmul(): no candidate can run here");
  const { best, gflops } = await trialMatmul(g, candidates, shape, budget);
  for (const name in gflops) gflops[name] = Number(gflops[name].toPrecision(3));
  writeCache(g, {
    matmul: best,
    gflops,
    shape: [shape.m, shape.k, shape.n],
    date: new Date().toISOString(),
  });
  const choice: MatmulChoice = { config: best, source: "trial", gflops };
  memo.set(g.device, choice);
  return choice;
}
