/**
 * @module
 * ssd: Switchable Sparse-Dense learning on WebGPU, as a library.
 *
 * - GPU runtime (`gpu/`): `initGpu()` opens the adapter's device once per
 *   process; `gpu()` returns its buffer pool, pipeline cache and command
 *   recorder.
 * - Tensors (`core/tensor.ts`): `tensor`, `empty`, `zeros`, `full`, `readAll`;
 *   GPU-resident, immutable, released to the pool by `release()` or by the
 *   enclosing `tidy()` scope (`core/scope.ts`).
 * - Autograd (`core/tape.ts`): every op records itself; `backward(loss)`
 *   fills `.grad` of the tensors created with `requiresGrad`.
 * - Ops (`core/ops/`): each with its forward and backward rule.
 * - Optimisation (`core/optim/`, `core/lr_schedule.ts`): AdamW, gradient
 *   clipping, learning-rate schedules.
 * - Seeded RNG (`core/rng.ts`) and the error classes (`core/errors.ts`).
 * - The model (`core/nn/`): `GPT` with nanoGPT tensor names, its config and
 *   presets, and `saveGPT` / `loadGPT` for safetensors checkpoints
 *   (`core/checkpoint.ts`).
 * - Data (`core/data.ts`, `core/tokenizer.ts`, `core/corpus_brown.ts`): byte
 *   tokens, the embedded Brown corpus, seeded batch sampling, the eval windows.
 * - MoE FFNs (`core/nn/moe_ffn*.ts`): inference (`moeFfn`), the sparse
 *   training op (`moeFfnTrain`), the decode GEMVs (`moeFfnDecode`), and the
 *   KV-cache `Decoder` with on-GPU sampling (`core/nn/decode.ts`).
 * - Pipelines (`pipelines/`): `runTrain`, `runEval`, `runGenerate`,
 *   `runInspect`, `runProfile`, `runMoefy`, `runBench`, `runReport`,
 *   `runDemo`, the jobs behind the `ssd` subcommands.
 *
 * @example
 * ```ts
 * import { backward, initGpu, mul, tensor, tidyAsync } from "./mod.ts";
 *
 * await initGpu();
 * const x = tensor([1, 2, 3], [3], { requiresGrad: true });
 * await tidyAsync(async () => {
 *   const y = mul(x, x);
 *   backward(y);
 *   console.log(await x.grad!.toArray()); // 2, 4, 6
 * });
 * ```
 */

export * from "./gpu/mod.ts";

export * from "./core/errors.ts";
export * from "./core/rng.ts";
export * from "./core/tensor.ts";
export * from "./core/tape.ts";
export * from "./core/scope.ts";

export * from "./core/ops/add.ts";
export * from "./core/ops/activation.ts";
export * from "./core/ops/attention.ts";
export * from "./core/ops/cross_entropy.ts";
export * from "./core/ops/gather.ts";
export * from "./core/ops/layernorm.ts";
export * from "./core/ops/reduce.ts";
export * from "./core/ops/shape.ts";
export * from "./core/ops/softmax.ts";
export * from "./core/ops/topk.ts";

export * from "./core/optim/adamw.ts";
export * from "./core/optim/clip.ts";
export * from "./core/lr_schedule.ts";

export * from "./core/ops/matmul.ts";
export { autotuneMatmul, setAutotune } from "./gpu/autotune.ts";

export * from "./core/nn/config.ts";
export * from "./core/nn/gpt.ts";
export * from "./core/nn/gpt_checkpoint.ts";
export * from "./core/checkpoint.ts";
export * from "./core/data.ts";
export * from "./core/tokenizer.ts";
export { loadBrown } from "./core/corpus_brown.ts";

export { runTrain, type TrainSummary } from "./pipelines/train/run.ts";
export {
  DEFAULT_TRAIN_CONFIG,
  type OptimizerConfig,
  resolveTrainConfig,
  type RunConfig,
  type TrainConfig,
} from "./pipelines/train/config.ts";
export { type EvalResult, evaluateTokens } from "./core/nn/token_nll.ts";
export { runEval } from "./pipelines/eval.ts";
export { runGenerate } from "./pipelines/generate.ts";
export { runInspect } from "./pipelines/inspect.ts";
export { runProfile } from "./pipelines/profile/run.ts";
export { runMoefy } from "./pipelines/moefy.ts";
export { benchJson, runBench } from "./pipelines/bench/run.ts";
export { runReport } from "./pipelines/report/run.ts";
export { runDemo } from "./pipelines/demo.ts";

export {
  type MoeActivation,
  moeFfn,
  moeFfnFlops,
  moeRoute,
  type MoeWeights,
} from "./core/nn/moe_ffn.ts";
export { moeFfnTrain } from "./core/nn/moe_ffn_train.ts";
export { ffnDecode, moeFfnDecode } from "./core/nn/moe_ffn_decode.ts";
export { Decoder, Generation, type SamplingConfig } from "./core/nn/decode.ts";

// Types that the exports above take or return.
export type { AutotuneOptions, MatmulChoice } from "./gpu/autotune.ts";
export type { MatmulConfig, MatmulDesign } from "./gpu/kernels/matmul.ts";
export type { ExpertMask } from "./gpu/kernels/adamw.ts";
export type { Brown } from "./core/corpus_brown.ts";
export type { MoeLayout } from "./core/nn/moe_layout.ts";
export type { MoeFfnOptions, MoeRouting } from "./core/nn/moe_ffn.ts";
export type { MoeFfnTrainOptions } from "./core/nn/moe_ffn_train.ts";
export type { FfnDecodeOptions, FfnWeights } from "./core/nn/moe_ffn_decode.ts";
export type { DecoderOptions } from "./core/nn/decode.ts";
export type { FlatConfig } from "./pipelines/config.ts";
export type { ProfileShares } from "./pipelines/train/kernel_profile.ts";
export type { AccountingSummary, PhaseTotals } from "./pipelines/train/accounting.ts";
export type { ScheduleConfig, ScheduleKind, SwitchEvent } from "./pipelines/train/schedule.ts";
export type { TrainOptions } from "./pipelines/train/run.ts";
export type { EvalConfig, EvalHooks, EvalReport } from "./pipelines/eval.ts";
export type { GenerateConfig } from "./pipelines/generate.ts";
export type { InspectConfig, InspectReport } from "./pipelines/inspect.ts";
export type { ProfileConfig, ProfileHooks, ProfileReport } from "./pipelines/profile/run.ts";
export type { MoefyConfig, MoefyReport } from "./pipelines/moefy.ts";
export type { BenchConfig, BenchHooks, BenchReport } from "./pipelines/bench/run.ts";
export type { ReportConfig, ReportResult } from "./pipelines/report/run.ts";
export type { DemoOptions, DemoResult } from "./pipelines/demo.ts";
export type { MatmulShape } from "./gpu/kernels/matmul.ts";
export type { RegisterTile } from "./gpu/kernels/matmul_register.ts";
export type { ChoiceSource } from "./gpu/autotune.ts";
export type { MoeDesign } from "./gpu/kernels/moe.ts";
export type { MoeDecodeStrategy } from "./gpu/kernels/moe_decode.ts";
export type {
  MoeSummary,
  OptimizerSummary,
  TensorSummary,
  TrainStateSummary,
} from "./pipelines/inspect.ts";
export type { MoefyLayer } from "./pipelines/moefy.ts";
export type { CheckpointProfile, PairSimilarity } from "./pipelines/profile/run.ts";
export { FAMILIES } from "./pipelines/train/kernel_profile.ts";
export type { SkippedPlot } from "./pipelines/report/_style.ts";
export type { Phase } from "./pipelines/train/schedule.ts";
export type { TrainHooks } from "./pipelines/train/run.ts";
export type { BenchRow } from "./pipelines/bench/run.ts";
export type { DecodeResult, PrefillResult } from "./pipelines/bench/run.ts";
export type { LayerProfile } from "./pipelines/profile/run.ts";
export type { CoverageRow } from "./pipelines/moefy.ts";
export type { StepMetrics } from "./pipelines/train/metrics.ts";
