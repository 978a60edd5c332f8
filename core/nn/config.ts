/**
 * GPT model config: the fields, their checks, presets, and the
 * nanoGPT tensor names and shapes they imply.
 */
import { ConfigError } from "../errors.ts";

/** Model shape. Field names are snake_case as stored in `ssd.config`. */
export interface GPTConfig {
  /** Vocabulary size (256 for byte-level tokens). */
  vocab: number;
  /** Context length: the most positions the model sees (wpe rows). */
  ctx: number;
  /** Residual stream width C. */
  d_model: number;
  /** Number of transformer blocks. */
  n_layer: number;
  /** Attention heads; must divide d_model. */
  n_head: number;
  /** FFN hidden width (neurons per layer): the axis experts partition. */
  d_ff: number;
  /** Biases in Linear and LayerNorm (nanoGPT's `bias`). */
  bias: boolean;
  /** FFN nonlinearity: ReLU (sparse, the subject) or GELU (for comparison). */
  activation: "relu" | "gelu";
}

/** Model presets: `tiny` for tests, `default` for `ssd train` with no flags. */
export const MODEL_PRESETS: Readonly<Record<string, Readonly<GPTConfig>>> = Object.freeze({
  tiny: Object.freeze({
    vocab: 256,
    ctx: 32,
    d_model: 32,
    n_layer: 2,
    n_head: 2,
    d_ff: 128,
    bias: true,
    activation: "relu",
  }),
  default: Object.freeze({
    vocab: 256,
    ctx: 64,
    d_model: 128,
    n_layer: 3,
    n_head: 4,
    d_ff: 512,
    bias: true,
    activation: "relu",
  }),
});

function posInt(name: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new ConfigError(`Invalid model config: ${name} must be a positive integer, got ${v}`);
  }
  return v;
}

/** Checks every field; throws `ConfigError` with one line naming the field. */
export function validateConfig(c: GPTConfig): GPTConfig {
  for (const k of ["vocab", "ctx", "d_model", "n_layer", "n_head", "d_ff"] as const) {
    posInt(k, c[k]);
  }
  if (c.d_model % c.n_head !== 0) {
    throw new ConfigError(
      `Invalid model config: d_model ${c.d_model} is not divisible by n_head ${c.n_head}`,
    );
  }
  if (typeof c.bias !== "boolean") {
    throw new ConfigError(`Invalid model config: bias must be true or false, got ${c.bias}`);
  }
  if (c.activation !== "relu" && c.activation !== "gelu") {
    throw new ConfigError(
      `Invalid model config: activation must be relu or gelu, got ${c.activation}`,
    );
  }
  return c;
}

/**
 * Every parameter's nanoGPT name and shape, in a fixed order (init order).
 * With `experts`, the MoE routers `transformer.h.{i}.mlp.router.weight`
 * [E, d_model] are included.
 */
export function paramShapes(c: GPTConfig, experts?: number): Map<string, number[]> {
  const C = c.d_model;
  const m = new Map<string, number[]>();
  m.set("transformer.wte.weight", [c.vocab, C]);
  m.set("transformer.wpe.weight", [c.ctx, C]);
  for (let i = 0; i < c.n_layer; i++) {
    const p = `transformer.h.${i}.`;
    m.set(p + "ln_1.weight", [C]);
    if (c.bias) m.set(p + "ln_1.bias", [C]);
    m.set(p + "attn.c_attn.weight", [3 * C, C]);
    if (c.bias) m.set(p + "attn.c_attn.bias", [3 * C]);
    m.set(p + "attn.c_proj.weight", [C, C]);
    if (c.bias) m.set(p + "attn.c_proj.bias", [C]);
    m.set(p + "ln_2.weight", [C]);
    if (c.bias) m.set(p + "ln_2.bias", [C]);
    m.set(p + "mlp.c_fc.weight", [c.d_ff, C]);
    if (c.bias) m.set(p + "mlp.c_fc.bias", [c.d_ff]);
    m.set(p + "mlp.c_proj.weight", [C, c.d_ff]);
    if (c.bias) m.set(p + "mlp.c_proj.bias", [C]);
    if (experts) m.set(p + "mlp.router.weight", [experts, C]);
  }
  m.set("transformer.ln_f.weight", [C]);
  if (c.bias) m.set("transformer.ln_f.bias", [C]);
  return m;
}

/** Number of parameters (tied lm_head counted once, as nanoGPT). */
export function paramCount(c: GPTConfig): number {
  let n = 0;
  for (const s of paramShapes(c).values()) n += s.reduce((a, b) => a * b, 1);
  return n;
}
