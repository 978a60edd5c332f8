/**
 * `deno task bench`: kernel throughput on this adapter.
 *
 * - matmul GFLOP/s for M×K×N = 256³, 512×512×2048, 2048×512×512, 1024³ in
 *   the transpose forms the model uses (NN: x·W and dX = dY·W; NT: x·Wᵀ,
 *   the Linear forward; TN: dW = dYᵀ·x), for each kernel design (the
 *   texture design's time includes packing its operands);
 * - elementwise add GB/s on 16M floats (3 × 64 MB moved per call);
 * - the cost of one dispatch when 1000 small ones are recorded in one
 *   encoder: (recording + submit + one wait) / 1000, first with the bind
 *   groups not yet cached (cold), then as in a steady training step.
 *
 * Every figure records many iterations in one submit and waits once (a host
 * wait alone costs ~12 ms on llvmpipe), repeated `--reps` times (default 2):
 * the table shows the best and the range. `--json` prints one JSON document
 * instead; `--designs texture,register` limits the designs; `--autotune`
 * runs the autotune trial first and reports its choice.
 */
import { autotuneMatmul, matmulChoice } from "../../gpu/autotune.ts";
import { binaryKernel } from "../../gpu/kernels/elementwise.ts";
import {
  configName,
  DEFAULT_MATMUL_CONFIGS,
  type MatmulDesign,
  matmulKernel,
  textureDesignSupported,
} from "../../gpu/kernels/matmul.ts";
import { initGpu } from "../../gpu/runtime.ts";

const SHAPES: [number, number, number][] = [[256, 256, 256], [512, 512, 2048], [2048, 512, 512], [
  1024,
  1024,
  1024,
]];
const FORMS = ["NN", "NT", "TN"] as const;
/** Wall time aimed at per timed batch of iterations. */
const BATCH_MS = 400;
const ELEMENTWISE_N = 16 * 1024 * 1024;
const DISPATCHES = 1000;

function flag(name: string): string | undefined {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}
const asJson = Deno.args.includes("--json");
const reps = Number(flag("--reps") ?? 2);
const designs =
  (flag("--designs")?.split(",") ?? ["texture", "register", "shared"]) as MatmulDesign[];

const g = await initGpu();
const log = (s: string) => asJson ? console.error(s) : console.log(s);

/**
 * Rate of `run(iters)` (which records `iters` calls doing `work` each):
 * best of `repeats` timed batches. `warm` compiles the pipelines first on a
 * small problem; a single call slower than a batch is timed once only.
 */
async function rate(
  work: number,
  run: (iters: number) => void,
  warm: () => void = () => run(1),
  repeats = reps,
): Promise<{ best: number; min: number; max: number }> {
  warm();
  await g.recorder.sync();
  let t0 = performance.now();
  run(1);
  await g.recorder.sync();
  const one = performance.now() - t0;
  const rates = [work / (one / 1000)];
  const iters = Math.min(64, Math.round(BATCH_MS / one));
  if (iters >= 2) {
    rates.length = 0;
    for (let r = 0; r < repeats; r++) {
      t0 = performance.now();
      run(iters);
      await g.recorder.sync();
      rates.push((work * iters) / ((performance.now() - t0) / 1000));
    }
  }
  return { best: Math.max(...rates), min: Math.min(...rates), max: Math.max(...rates) };
}

const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

// ---- matmul ------------------------------------------------------------------

interface MatmulRow {
  m: number;
  k: number;
  n: number;
  form: string;
  design: MatmulDesign;
  config: string;
  gflops: number;
  range: [number, number];
}

const autotune = Deno.args.includes("--autotune") ? await autotuneMatmul(g) : matmulChoice(g);
log(`adapter: ${g.dev.summary.name} (fallback: ${g.dev.summary.isFallback})`);
log(`autotune: ${configName(autotune.config)} (${autotune.source})`);

const matmulRows: MatmulRow[] = [];
const usable = designs.filter((d) => d !== "texture" || textureDesignSupported());
const maxElems = Math.max(...SHAPES.map(([m, k, n]) => Math.max(m * k, k * n, m * n)));
const bufA = g.pool.acquire(maxElems * 4, "bench.a");
const bufB = g.pool.acquire(maxElems * 4, "bench.b");
const bufC = g.pool.acquire(maxElems * 4, "bench.c");
const init = Float32Array.from({ length: maxElems }, (_, i) => ((i * 7919) % 101) / 101 - 0.5);
g.recorder.upload(bufA, init);
g.recorder.upload(bufB, init);

log("\nmatmul GFLOP/s (best of reps, [range])");
const header = ["M×K×N", "form", ...usable.map((d) => configName(DEFAULT_MATMUL_CONFIGS[d]))];
const widths = header.map((h) => Math.max(h.length, 18));
log(header.map((h, i) => h.padEnd(widths[i])).join(" "));
for (const [m, k, n] of SHAPES) {
  for (const form of FORMS) {
    const cells = [`${m}×${k}×${n}`, form];
    for (const design of usable) {
      const config = DEFAULT_MATMUL_CONFIGS[design];
      const shape = { m, k, n, transA: form[0] === "T", transB: form[1] === "T" };
      const r = await rate(
        2 * m * k * n,
        (iters) => {
          for (let i = 0; i < iters; i++) matmulKernel(g, bufC, bufA, bufB, null, shape, config);
        },
        () => matmulKernel(g, bufC, bufA, bufB, null, { ...shape, m: 8, k: 8, n: 8 }, config),
      );
      matmulRows.push({
        m,
        k,
        n,
        form,
        design,
        config: configName(config),
        gflops: round(r.best / 1e9),
        range: [round(r.min / 1e9), round(r.max / 1e9)],
      });
      cells.push(
        `${(r.best / 1e9).toFixed(1)} [${(r.min / 1e9).toFixed(1)}-${(r.max / 1e9).toFixed(1)}]`,
      );
    }
    log(cells.map((c, i) => c.padEnd(widths[i])).join(" "));
  }
}
g.pool.release(bufA);
g.pool.release(bufB);
g.pool.release(bufC);

// ---- elementwise ---------------------------------------------------------------

const ea = g.pool.acquire(ELEMENTWISE_N * 4, "bench.ea");
const eb = g.pool.acquire(ELEMENTWISE_N * 4, "bench.eb");
const ec = g.pool.acquire(ELEMENTWISE_N * 4, "bench.ec");
const ew = await rate(3 * ELEMENTWISE_N * 4, (iters) => {
  for (let i = 0; i < iters; i++) binaryKernel(g, "add", ec, ea, eb, ELEMENTWISE_N, ELEMENTWISE_N);
});
g.pool.release(ea);
g.pool.release(eb);
g.pool.release(ec);
log(
  `\nelementwise add, 16M floats: ${(ew.best / 1e9).toFixed(1)} GB/s ` +
    `[${(ew.min / 1e9).toFixed(1)}-${(ew.max / 1e9).toFixed(1)}]`,
);

// ---- dispatch cost ---------------------------------------------------------------

/**
 * µs per dispatch for `DISPATCHES` tiny adds. `fresh`: every dispatch writes
 * a buffer never bound before, so no bind group comes from the cache.
 */
async function dispatchCost(fresh: boolean): Promise<{ recordUs: number; totalUs: number }> {
  const ins = [g.pool.acquire(256), g.pool.acquire(256)];
  const outs = Array.from(
    { length: fresh ? DISPATCHES : 1 },
    () => g.device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE }),
  );
  await g.recorder.sync();
  const t0 = performance.now();
  for (let i = 0; i < DISPATCHES; i++) {
    binaryKernel(g, "add", outs[i % outs.length], ins[0], ins[1], 64, 64);
  }
  const t1 = performance.now();
  await g.recorder.sync();
  const t2 = performance.now();
  for (const b of ins) g.pool.release(b);
  for (const b of outs) b.destroy();
  return { recordUs: ((t1 - t0) * 1000) / DISPATCHES, totalUs: ((t2 - t0) * 1000) / DISPATCHES };
}
await dispatchCost(false); // warm-up: pipeline and arena
const cold = await dispatchCost(true);
const warmRuns = [];
for (let r = 0; r < Math.max(reps, 2); r++) warmRuns.push(await dispatchCost(false));
const warm = warmRuns.reduce((x, y) => (y.totalUs < x.totalUs ? y : x));
log(
  `\none dispatch of ${DISPATCHES} in one encoder: ${warm.totalUs.toFixed(1)} µs ` +
    `(recording ${warm.recordUs.toFixed(1)} µs; with a new bind group per dispatch: ` +
    `${cold.totalUs.toFixed(1)} µs, recording ${cold.recordUs.toFixed(1)} µs)`,
);

if (asJson) {
  console.log(JSON.stringify(
    {
      adapter: g.dev.summary.name,
      fallback: g.dev.summary.isFallback,
      deno: Deno.version.deno,
      reps,
      autotune: { config: autotune.config, source: autotune.source },
      matmul: matmulRows,
      elementwise: {
        n: ELEMENTWISE_N,
        gbps: round(ew.best / 1e9),
        range: [round(ew.min / 1e9), round(ew.max / 1e9)],
      },
      dispatch: {
        count: DISPATCHES,
        us_per_dispatch: round(warm.totalUs, 1),
        record_us_per_dispatch: round(warm.recordUs, 1),
        cold_us_per_dispatch: round(cold.totalUs, 1),
        cold_record_us_per_dispatch: round(cold.recordUs, 1),
      },
    },
    null,
    2,
  ));
}
