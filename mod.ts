/**
 * @module
 * ssd: Switchable Sparse-Dense learning on WebGPU, as a library.
 *
 * Three layers, each with its own `mod.ts`: `gpu/`, `core/` (which also
 * defines the dimension letters B, T, C, E, k, d_ff... of the shape
 * comments) and `pipelines/`.
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
 *   `runInspect`, `runExport` (a checkpoint as a Hugging Face GPT-2 or
 *   nanoGPT folder), `runProfile`, `runMoefy`, `runBench`, `runReport`,
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
export { autotuneMatmul, setAutotune } from "./gpu/autotune.ts";
export type { AutotuneOptions, ChoiceSource, MatmulChoice } from "./gpu/autotune.ts";
export type { MatmulConfig, MatmulDesign, MatmulShape } from "./gpu/kernels/matmul.ts";
export type { RegisterTile } from "./gpu/kernels/matmul_register.ts";
export type { ExpertMask } from "./gpu/kernels/adamw.ts";
export type { MoeDesign } from "./gpu/kernels/moe.ts";
export type { MoeDecodeStrategy } from "./gpu/kernels/moe_decode.ts";

export * from "./core/mod.ts";
export * from "./pipelines/mod.ts";
