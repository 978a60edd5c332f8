/**
 * The layouts `ssd export` writes, as host tensors and JSON documents (no
 * file I/O here, pipelines/export.ts writes them):
 *
 * - `hf`: Hugging Face's `GPT2LMHeadModel`. Its projections are `Conv1D`,
 *   y = x·W + b with W stored [in, out], the transpose of nanoGPT's Linear
 *   [out, in]; it always has biases, so a model without them gets zeros
 *   (the same function); the head is tied to `wte`, so no `lm_head.weight`.
 *   The config matches core's forward: LayerNorm eps 1e-5, attention scaled
 *   by 1/√(head size), GELU in its tanh form (`gelu_new`).
 * - `nanogpt`: nanoGPT's model.py names and Linear layout, as stored, plus
 *   `lm_head.weight` (a copy of `wte`: nanoGPT's state dict lists the tied
 *   weight under both names, so a strict `load_state_dict` needs both).
 * - MoE checkpoints export their dense form (all experts, neurons in stored
 *   order, which computes exactly what the dense model computes) and
 *   `moe.json` with the layout, the routers in `router.safetensors`.
 */
import { f32Data, type HostTensor } from "../core/checkpoint.ts";
import type { GPTConfig } from "../core/nn/config.ts";
import { LAYERNORM_EPS } from "../core/ops/layernorm.ts";
import { type MoeLayout, routerName } from "../core/nn/moe_layout.ts";
import { TOKENIZER_ID } from "../core/tokenizer.ts";

/** The formats `ssd export` writes. */
export const EXPORT_FORMATS = ["hf", "nanogpt"] as const;
/** One of `EXPORT_FORMATS`. */
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** The weights of a checkpoint by nanoGPT name (validated against its config). */
export type Weights = ReadonlyMap<string, HostTensor>;

/** The byte tokenizer, for the `ssd` note of both configs. */
const BYTE_TOKENIZER = {
  tokenizer: TOKENIZER_ID,
  note: "no tokenizer file: token ids are the UTF-8 bytes of the text (vocab 256, no special " +
    "tokens); encode with list(text.encode()), decode with bytes(ids).decode('utf-8', 'replace')",
};

// NUL never occurs in text, so as end-of-text it stops nothing early, and
// generate() has a valid id to pad with (GPT-2's 50256 is outside 256 bytes).
const BYTE_BOS_EOS = 0;

function f32(shape: readonly number[], data: Float32Array): HostTensor {
  return { dtype: "F32", shape, data };
}

/** [rows, cols] → [cols, rows]: nanoGPT's Linear [out, in] to Conv1D's [in, out]. */
export function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  }
  return out;
}

function get(w: Weights, name: string): Float32Array {
  return f32Data(w.get(name)!, name);
}

/** The stored tensor, or zeros of `n` elements when the model has no biases. */
function biasOrZeros(w: Weights, name: string, n: number): HostTensor {
  const t = w.get(name);
  return t ? f32([n], f32Data(t, name)) : f32([n], new Float32Array(n));
}

/** Hugging Face GPT-2 tensors: Conv1D weights [in, out], biases always, tied head. */
export function hfTensors(c: GPTConfig, w: Weights): Map<string, HostTensor> {
  const C = c.d_model;
  const out = new Map<string, HostTensor>();
  out.set("transformer.wte.weight", f32([c.vocab, C], get(w, "transformer.wte.weight")));
  out.set("transformer.wpe.weight", f32([c.ctx, C], get(w, "transformer.wpe.weight")));
  // name, in, out of each projection
  const convs: [string, number, number][] = [
    ["attn.c_attn", C, 3 * C],
    ["attn.c_proj", C, C],
    ["mlp.c_fc", C, c.d_ff],
    ["mlp.c_proj", c.d_ff, C],
  ];
  for (let i = 0; i < c.n_layer; i++) {
    const p = `transformer.h.${i}.`;
    for (const ln of ["ln_1", "ln_2"]) {
      out.set(`${p}${ln}.weight`, f32([C], get(w, `${p}${ln}.weight`)));
      out.set(`${p}${ln}.bias`, biasOrZeros(w, `${p}${ln}.bias`, C));
    }
    for (const [name, nIn, nOut] of convs) {
      const W = transpose(get(w, `${p}${name}.weight`), nOut, nIn);
      out.set(`${p}${name}.weight`, f32([nIn, nOut], W));
      out.set(`${p}${name}.bias`, biasOrZeros(w, `${p}${name}.bias`, nOut));
    }
  }
  out.set("transformer.ln_f.weight", f32([C], get(w, "transformer.ln_f.weight")));
  out.set("transformer.ln_f.bias", biasOrZeros(w, "transformer.ln_f.bias", C));
  return out;
}

/** `config.json` for `GPT2LMHeadModel.from_pretrained`. */
export function hfConfig(c: GPTConfig, moe: MoeLayout | null): Record<string, unknown> {
  return {
    architectures: ["GPT2LMHeadModel"],
    model_type: "gpt2",
    vocab_size: c.vocab,
    n_positions: c.ctx,
    n_embd: c.d_model,
    n_layer: c.n_layer,
    n_head: c.n_head,
    n_inner: c.d_ff,
    // core's GELU is the tanh form, which Hugging Face calls gelu_new.
    activation_function: c.activation === "gelu" ? "gelu_new" : "relu",
    layer_norm_epsilon: LAYERNORM_EPS,
    resid_pdrop: 0,
    embd_pdrop: 0,
    attn_pdrop: 0,
    initializer_range: 0.02,
    scale_attn_weights: true,
    scale_attn_by_inverse_layer_idx: false,
    reorder_and_upcast_attn: false,
    tie_word_embeddings: true,
    use_cache: true,
    bos_token_id: BYTE_BOS_EOS,
    eos_token_id: BYTE_BOS_EOS,
    torch_dtype: "float32",
    ssd: {
      ...BYTE_TOKENIZER,
      bos_eos:
        `bos_token_id and eos_token_id are ${BYTE_BOS_EOS} (the NUL byte): the model has no ` +
        "special tokens, and NUL does not occur in text",
      ...(c.bias ? {} : {
        bias: "the model has no biases: the exported biases are zeros (the same function)",
      }),
      ...(moe ? { moe: "moe.json" } : {}),
    },
  };
}

/** nanoGPT tensors: the checkpoint's own, plus `lm_head.weight` (the tied `wte`). */
export function nanogptTensors(c: GPTConfig, w: Weights): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [name, t] of w) {
    if (!name.endsWith(".mlp.router.weight")) out.set(name, t);
  }
  out.set("lm_head.weight", f32([c.vocab, c.d_model], get(w, "transformer.wte.weight")));
  return out;
}

/** `config.json` with nanoGPT's `GPTConfig` fields, and where this model departs from them. */
export function nanogptConfig(c: GPTConfig, moe: MoeLayout | null): Record<string, unknown> {
  const standard = c.d_ff === 4 * c.d_model;
  const mlp = `this model's MLP is ${c.d_ff} wide (${standard ? "" : "not "}4·n_embd = ` +
    `${4 * c.d_model}) with ${c.activation === "gelu" ? "tanh-form GELU" : "ReLU"}`;
  const fix = [
    standard ? null : `give each block's mlp.c_fc nn.Linear(n_embd, ${c.d_ff}) and mlp.c_proj ` +
      `nn.Linear(${c.d_ff}, n_embd) before loading`,
    c.activation === "gelu"
      ? "replace each mlp.gelu with nn.GELU(approximate='tanh')"
      : "replace each mlp.gelu with nn.ReLU()",
  ].filter((s) => s !== null).join(", and ");
  return {
    block_size: c.ctx,
    vocab_size: c.vocab,
    n_layer: c.n_layer,
    n_head: c.n_head,
    n_embd: c.d_model,
    dropout: 0,
    bias: c.bias,
    ssd: {
      ...BYTE_TOKENIZER,
      d_ff: c.d_ff,
      activation: c.activation,
      note: `nanoGPT's MLP is 4·n_embd wide with exact GELU (nn.GELU()); ${mlp}: ${fix}`,
      ...(moe ? { moe: "moe.json" } : {}),
    },
  };
}

/** The routers of an MoE checkpoint, as stored: `transformer.h.{i}.mlp.router.weight` [E, C]. */
export function routerTensors(c: GPTConfig, w: Weights): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (let i = 0; i < c.n_layer; i++) out.set(routerName(i), w.get(routerName(i))!);
  return out;
}

/** `moe.json`: the expert layout of the exported dense FFNs, for rebuilding the MoE. */
export function moeJson(
  c: GPTConfig,
  moe: MoeLayout,
  format: ExportFormat,
): Record<string, unknown> {
  const s = c.d_ff / moe.experts;
  const fc = format === "hf"
    ? "columns [e·s, (e+1)·s) of mlp.c_fc.weight [n_embd, d_ff], entries [e·s, (e+1)·s) of " +
      "mlp.c_fc.bias, rows [e·s, (e+1)·s) of mlp.c_proj.weight [d_ff, n_embd]"
    : "rows [e·s, (e+1)·s) of mlp.c_fc.weight [d_ff, n_embd], entries [e·s, (e+1)·s) of " +
      "mlp.c_fc.bias, columns [e·s, (e+1)·s) of mlp.c_proj.weight [n_embd, d_ff]";
  return {
    experts: moe.experts,
    top_k: moe.top_k,
    expert_size: s,
    router: moe.router,
    method: moe.method,
    router_file: "router.safetensors",
    router_tensors: "transformer.h.{i}.mlp.router.weight, [experts, n_embd] F32, one per layer",
    perms: moe.perms,
    note: "model.safetensors is the dense model (all experts, neurons in stored order). Expert " +
      `e owns ${fc} (s = expert_size). perms[i][j] is the stored position of layer i's original ` +
      "neuron j. The MoE forward at top_k: h = ln_2(x), scores = h @ router.T, each token runs " +
      "only its top_k experts (ties to the lower index), their outputs summed with weight 1, " +
      "c_proj's bias added once; with top_k = experts it equals the dense model",
  };
}
