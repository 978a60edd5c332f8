/**
 * @module
 * The model side of ssd: GPU-resident tensors with autograd, the ops, the
 * optimiser, GPT with its MoE FFNs and KV-cache decoder, checkpoints, data.
 *
 * Dimension letters used in shape comments and names throughout `core/`:
 *
 * - `B`: batch (sequences per forward);
 * - `T`: sequence length (positions of a window, at most `ctx`);
 * - `C`: model width (`d_model`);
 * - `V`: vocabulary (256 byte tokens);
 * - `H`: attention heads (`n_head`), each of width C / H;
 * - `L`: transformer blocks (`n_layer`);
 * - `d_ff` (also `F`): FFN width, the neurons that MoE-fication partitions;
 * - `E`: experts per FFN layer (E divides d_ff);
 * - `s`: neurons per expert, d_ff / E (expert e owns stored rows [e·s, (e+1)·s));
 * - `k`: experts per token (top-k routing, 1 ≤ k ≤ E);
 * - `N`: tokens flattened over batch and positions (B·T), as the FFN sees them.
 */
export * from "./errors.ts";
export * from "./rng.ts";
export * from "./tensor.ts";
export * from "./tape.ts";
export * from "./scope.ts";

export * from "./ops/add.ts";
export * from "./ops/activation.ts";
export * from "./ops/attention.ts";
export * from "./ops/cross_entropy.ts";
export * from "./ops/gather.ts";
export * from "./ops/layernorm.ts";
export * from "./ops/reduce.ts";
export * from "./ops/shape.ts";
export * from "./ops/softmax.ts";
export * from "./ops/topk.ts";
export * from "./ops/matmul.ts";

export * from "./optim/adamw.ts";
export * from "./optim/clip.ts";
export * from "./lr_schedule.ts";

export * from "./nn/config.ts";
export * from "./nn/gpt.ts";
export * from "./nn/gpt_checkpoint.ts";
export * from "./checkpoint.ts";
export * from "./data.ts";
export * from "./tokenizer.ts";
export { type Brown, loadBrown } from "./corpus_brown.ts";
export { type EvalResult, evaluateTokens } from "./nn/token_nll.ts";

export {
  type MoeActivation,
  moeFfn,
  moeFfnFlops,
  type MoeFfnOptions,
  moeRoute,
  type MoeRouting,
  type MoeWeights,
} from "./nn/moe_ffn.ts";
export { moeFfnTrain, type MoeFfnTrainOptions } from "./nn/moe_ffn_train.ts";
export { MOE_OUTER_DESIGNS, type MoeOuterDesign } from "../gpu/kernels/moe_backward.ts";
export {
  ffnDecode,
  type FfnDecodeOptions,
  type FfnWeights,
  moeFfnDecode,
} from "./nn/moe_ffn_decode.ts";
export {
  Decoder,
  type DecoderOptions,
  DEFAULT_SAMPLING,
  Generation,
  type SamplingConfig,
} from "./nn/decode.ts";
export type { MoeLayout } from "./nn/moe_layout.ts";
