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
 * - Pipelines (`pipelines/`): `runTrain`, `runEval`, `runGenerate`,
 *   `runInspect`, the jobs behind the `ssd` subcommands.
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

export { runTrain, type TrainSummary } from "./pipelines/train.ts";
export {
  DEFAULT_TRAIN_CONFIG,
  resolveTrainConfig,
  type TrainConfig,
} from "./pipelines/train_config.ts";
export { type EvalResult, evaluateTokens } from "./pipelines/evaluate.ts";
export { runEval } from "./pipelines/eval.ts";
export { runGenerate } from "./pipelines/generate.ts";
export { runInspect } from "./pipelines/inspect.ts";
