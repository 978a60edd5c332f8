/**
 * Training-step FFN time, dense vs sparse MoE (not a test):
 * `deno run -A tests/bench/moe_train_bench.ts [--reps R] [--tokens 512,4096]
 * [--topk 4,8,16] [--json]`.
 *
 * Shape: C = 128, d_ff = 512, E = 16 (s = 32), random weights, inputs and
 * output gradient (random router: expert loads roughly balanced). One call =
 * forward + backward with gradients for h and every FFN tensor: dense is
 * `linear → relu → linear` through the tape (autotuned matmul), MoE is
 * `moeFfnTrain` (router gradient included). Each figure records many calls
 * in one submit and waits once: ms per call, best of `--reps` batches, with
 * the range.
 */
import {
  BATCH_MS,
  BENCH_FFN,
  type BenchConfig,
  benchFlags,
  benchWeights,
  compareConfigs,
  type CompareRow,
} from "./_compare.ts";
import { moeFfnFlops } from "../../core/nn/moe_ffn.ts";
import { moeFfnTrain } from "../../core/nn/moe_ffn_train.ts";
import { relu } from "../../core/ops/activation.ts";
import { linear } from "../../core/ops/matmul.ts";
import { Rng } from "../../core/rng.ts";
import { backward } from "../../core/tape.ts";
import { type Tensor, tensor } from "../../core/tensor.ts";
import { matmulChoice } from "../../gpu/autotune.ts";
import { configName } from "../../gpu/kernels/matmul.ts";
import { initGpu } from "../../gpu/runtime.ts";

const { C, DFF, E } = BENCH_FFN;
const { asJson, reps, tokens, topks } = benchFlags();

const g = await initGpu();
const log = (s: string) => asJson ? console.error(s) : console.log(s);
log(`adapter: ${g.dev.summary.name}; dense matmul: ${configName(matmulChoice(g).config)}`);

const rng = new Rng(7);
const w = benchWeights(rng, true);

/** One training-step FFN: forward, backward with seed G, then drop the gradients. */
function step(h: Tensor, G: Tensor, fwd: () => Tensor): void {
  backward(fwd(), G);
  for (const t of [h, w.fcW, w.fcB!, w.projW, w.projB!, w.router]) {
    t.grad?.release();
    t.grad = null;
  }
}

const rows: CompareRow[] = [];

log(`\nFFN forward+backward, C ${C}, d_ff ${DFF}, E ${E}: ms per call, best of ${reps} [range]`);
log(["tokens", "mode", "k", "ms", "range", "GFLOP", "vs dense"].map((s) => s.padEnd(12)).join(""));
for (const N of tokens) {
  const h = tensor(rng.normalArray(N * C, 1), [N, C], { requiresGrad: true });
  const G = tensor(rng.normalArray(N * C, 1), [N, C]);
  const configs: BenchConfig[] = [{
    mode: "dense",
    k: null,
    flops: 3 * 4 * N * C * DFF,
    call: () => step(h, G, () => linear(relu(linear(h, w.fcW, w.fcB)), w.projW, w.projB)),
  }];
  for (const k of topks) {
    configs.push({
      mode: "moe",
      k,
      // forward, plus twice the expert FLOPs and the router's twice in backward
      flops: 3 * moeFfnFlops(N, C, DFF, E, k),
      call: () => step(h, G, () => moeFfnTrain(h, w, E, k, "relu")),
    });
  }
  rows.push(...(await compareConfigs(N, configs, reps, BATCH_MS, 32, log)));
  h.release();
  G.release();
}

if (asJson) {
  console.log(JSON.stringify({ adapter: g.dev.summary.name, C, d_ff: DFF, E, reps, rows }));
}
