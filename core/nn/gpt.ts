/**
 * GPT, after nanoGPT's model.py: pre-LayerNorm blocks, learned
 * positional embeddings, causal multi-head attention, a ReLU FFN, and the
 * output projection tied to the token embedding. Parameters carry their
 * nanoGPT names, so a checkpoint loads into a nanoGPT-style PyTorch model.
 *
 * References: nanoGPT (karpathy/nanoGPT, model.py); GPT-2 initialisation
 * (normal 0.02, residual projections scaled by 1/sqrt(2 n_layer)).
 */
import { gelu, relu } from "../ops/activation.ts";
import { add } from "../ops/add.ts";
import { attention } from "../ops/attention.ts";
import { crossEntropy } from "../ops/cross_entropy.ts";
import { embedding, gather } from "../ops/gather.ts";
import { layerNorm } from "../ops/layernorm.ts";
import { linear } from "../ops/matmul.ts";
import { fractionPositive } from "../ops/reduce.ts";
import { fmtShape, ShapeError } from "../errors.ts";
import type { Rng } from "../rng.ts";
import { keep } from "../scope.ts";
import { isGradEnabled } from "../tape.ts";
import { full, type Tensor, tensor } from "../tensor.ts";
import { type GPTConfig, paramShapes, validateConfig } from "./config.ts";
import type { MoeLayout } from "./moe_layout.ts";
import { moeFfn } from "./moe_ffn.ts";
import { moeFfnTrain } from "./moe_ffn_train.ts";

/** What `forward` returns: logits always, the loss when targets were given. */
export interface GPTOutput {
  /** (B, T, V) next-token logits. */
  logits: Tensor;
  /** Mean cross-entropy over the B·T targets (shape [1]), if targets were given. */
  loss: Tensor | null;
  /** Per layer, the fraction of FFN activations > 0 (shape [1] each), when asked for. */
  actRatio: Tensor[];
}

/** Receives layer i's FFN activations (B, T, d_ff) and input (B, T, C) during a dense forward. */
export type FfnProbe = (act: Tensor, input: Tensor, layer: number) => void;

/** Options of `GPT.forward`. */
export interface ForwardOptions {
  /** Also measure each FFN layer's activation ratio on this batch. */
  actRatio?: boolean;
  /**
   * Experts per token for an MoE model: below E, each FFN computes only the
   * top-k experts its router picks (inference path); E or absent = dense.
   */
  topK?: number;
  /** Called with every layer's FFN activations and input (dense layers only). */
  probe?: FfnProbe;
  /** Sparse layers in training: called with each layer's tokens per expert, (E) u32. */
  onExpertCounts?: (layer: number, counts: Tensor) => void;
  /** Run the MoE path even at topK = E (it equals the dense path: for checks). */
  forceSparse?: boolean;
  /**
   * Replaces layer i's causal self-attention over its own qkv (B, T, 3C) →
   * (B, T, C): the KV-cache decode (core/nn/decode.ts) attends over cached
   * keys and values instead, and fills the cache during the prefill.
   */
  attention?: (qkv: Tensor, layer: number) => Tensor;
  /**
   * Wraps or replaces layer i's FFN on its input m = ln_2(x) (B, T, C) →
   * (B, T, C); `own` runs the model's FFN (e.g. to tag its kernels in a
   * profile, or to use a decode-specific kernel instead).
   */
  ffn?: (m: Tensor, layer: number, own: (m: Tensor) => Tensor) => Tensor;
}

/** The GPT with its parameters on the GPU. */
export class GPT {
  /** Model shape. */
  readonly config: GPTConfig;
  /** Parameters by nanoGPT name, in `paramShapes` order. */
  readonly params: Map<string, Tensor>;
  /**
   * MoE layout when the FFNs are MoE-fied (routers in `params`), else null.
   * SSD training re-permutes the experts in place and updates it.
   */
  moe: MoeLayout | null;
  #positions = new Map<number, Tensor>();
  // LayerNorm without bias (bias: false) adds this constant zero vector.
  #zeroBias: Tensor | null = null;

  /** Wraps existing parameter tensors (checked against the config's shapes). */
  constructor(config: GPTConfig, params: Map<string, Tensor>, moe: MoeLayout | null = null) {
    this.config = validateConfig(config);
    this.moe = moe;
    for (const [name, shape] of paramShapes(config, moe?.experts)) {
      const p = params.get(name);
      if (!p) throw new ShapeError(`GPT: missing parameter ${name} ${fmtShape(shape)}`);
      if (p.shape.length !== shape.length || p.shape.some((d, i) => d !== shape[i])) {
        throw new ShapeError(
          `GPT: parameter ${name} has shape ${fmtShape(p.shape)}, config needs ${fmtShape(shape)}`,
        );
      }
      p.name = name;
      p.requiresGrad = true;
    }
    this.params = params;
  }

  /**
   * GPT-2 initialisation from a seeded RNG (same seed, same weights). With
   * `moe`, the model also gets that MoE layout and zero routers (for SSD
   * training: the experts are formed, and the routers built, at the first
   * switch to sparse). Weights do not depend on `moe`.
   */
  static init(config: GPTConfig, rng: Rng, moe: MoeLayout | null = null): GPT {
    validateConfig(config);
    const residualStd = 0.02 / Math.sqrt(2 * config.n_layer);
    const params = new Map<string, Tensor>();
    for (const [name, shape] of paramShapes(config, moe?.experts)) {
      const n = shape.reduce((a, b) => a * b, 1);
      let t: Tensor;
      if (name.endsWith(".bias") || name.endsWith("router.weight")) t = full(shape, 0);
      else if (/ln_\d\.weight$|ln_f\.weight$/.test(name)) t = full(shape, 1);
      else {
        const std = name.endsWith("c_proj.weight") ? residualStd : 0.02;
        t = tensor(rng.normalArray(n, std), shape);
      }
      t.name = name;
      params.set(name, keep(t));
    }
    return new GPT(config, params, moe);
  }

  /** Parameter by name (throws on an unknown name). */
  p(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new ShapeError(`GPT: no parameter named ${name}`);
    return t;
  }

  /** Optional Linear bias: null when the config has none. */
  #b(name: string): Tensor | null {
    return this.config.bias ? this.p(name) : null;
  }

  /** LayerNorm bias, or a constant zero vector when the config has none. */
  #lnb(name: string): Tensor {
    if (this.config.bias) return this.p(name);
    this.#zeroBias ??= keep(full([this.config.d_model], 0));
    return this.#zeroBias;
  }

  #positionIds(T: number): Tensor {
    let pos = this.#positions.get(T);
    if (!pos) {
      pos = keep(tensor(Array.from({ length: T }, (_, i) => i), [T], { dtype: "u32" }));
      this.#positions.set(T, pos);
    }
    return pos;
  }

  /**
   * One transformer block: x + attn(ln_1(x)), then + mlp(ln_2(x)), with
   * `forward`'s options: `opts.topK` picks the MoE path, `opts.probe`
   * receives the dense FFN's activations (B, T, d_ff) and its input (B, T, C),
   * e.g. to measure sparsity or fit a router.
   */
  block(x: Tensor, i: number, opts: ForwardOptions = {}): Tensor {
    const h = `transformer.h.${i}.`;
    const c = this.config;
    const a = layerNorm(x, this.p(h + "ln_1.weight"), this.#lnb(h + "ln_1.bias"));
    const qkv = linear(a, this.p(h + "attn.c_attn.weight"), this.#b(h + "attn.c_attn.bias")); // (B, T, 3C)
    const y = opts.attention ? opts.attention(qkv, i) : attention(qkv, c.n_head); // (B, T, C)
    x = add(x, linear(y, this.p(h + "attn.c_proj.weight"), this.#b(h + "attn.c_proj.bias")));
    const m = layerNorm(x, this.p(h + "ln_2.weight"), this.#lnb(h + "ln_2.bias"));
    const own = (m: Tensor) => this.#ffn(m, i, opts);
    return add(x, opts.ffn ? opts.ffn(m, i, own) : own(m));
  }

  /** Layer i's FFN on m = ln_2(x) (B, T, C): dense, or the top-k experts of an MoE layer. */
  #ffn(m: Tensor, i: number, opts: ForwardOptions): Tensor {
    const h = `transformer.h.${i}.`;
    const topK = opts.topK;
    if (this.moe && topK !== undefined && (topK < this.moe.experts || opts.forceSparse)) {
      return this.#sparseFfn(m, i, topK, opts.onExpertCounts);
    }
    const pre = linear(m, this.p(h + "mlp.c_fc.weight"), this.#b(h + "mlp.c_fc.bias")); // (B, T, d_ff)
    const act = this.config.activation === "gelu" ? gelu(pre) : relu(pre);
    opts.probe?.(act, m, i);
    return linear(act, this.p(h + "mlp.c_proj.weight"), this.#b(h + "mlp.c_proj.bias"));
  }

  /**
   * The FFN computing only each token's top-k experts (the MoE view):
   * the training op (with a backward) when gradients are recorded, else the
   * inference path.
   */
  #sparseFfn(
    m: Tensor,
    i: number,
    topK: number,
    onCounts?: (layer: number, counts: Tensor) => void,
  ): Tensor {
    const h = `transformer.h.${i}.mlp.`;
    const w = {
      fcW: this.p(h + "c_fc.weight"),
      fcB: this.#b(h + "c_fc.bias"),
      projW: this.p(h + "c_proj.weight"),
      projB: this.#b(h + "c_proj.bias"),
      router: this.p(h + "router.weight"),
    };
    const E = this.moe!.experts;
    if (!isGradEnabled()) return moeFfn(m, w, E, topK, this.config.activation);
    // The forward weighs experts by 1 and so does not depend on the router:
    // h's gradient is the masked FFN's; the router learns straight-through.
    return moeFfnTrain(m, w, E, topK, this.config.activation, {
      routerInputGrad: false,
      onCounts: onCounts && ((c) => onCounts(i, c)),
    });
  }

  /** Logits for tokens (B, T) u32, and the loss when targets (B, T) are given. */
  forward(tokens: Tensor, targets?: Tensor, opts: ForwardOptions = {}): GPTOutput {
    const c = this.config;
    if (tokens.shape.length !== 2 || tokens.dtype !== "u32") {
      throw new ShapeError(`GPT.forward: tokens must be u32 (B, T), got ${fmtShape(tokens.shape)}`);
    }
    const T = tokens.shape[1];
    if (T > c.ctx) {
      throw new ShapeError(`GPT.forward: sequence length ${T} exceeds the context ${c.ctx}`);
    }
    const tok = embedding(this.p("transformer.wte.weight"), tokens); // (B, T, C)
    const pos = gather(this.p("transformer.wpe.weight"), this.#positionIds(T)); // (T, C)
    let x = add(tok, pos);
    const actRatio: Tensor[] = [];
    const probe: FfnProbe | undefined = opts.actRatio || opts.probe
      ? (a, m, i) => {
        if (opts.actRatio) actRatio.push(fractionPositive(a));
        opts.probe?.(a, m, i);
      }
      : undefined;
    const layerOpts = { ...opts, probe };
    for (let i = 0; i < c.n_layer; i++) x = this.block(x, i, layerOpts);
    const logits = this.head(x); // (B, T, V)
    const loss = targets ? crossEntropy(logits, targets) : null;
    return { logits, loss, actRatio };
  }

  /** The output head: ln_f, then the projection tied to wte. (B, T, C) → (B, T, V) logits. */
  head(x: Tensor): Tensor {
    x = layerNorm(x, this.p("transformer.ln_f.weight"), this.#lnb("transformer.ln_f.bias"));
    return linear(x, this.p("transformer.wte.weight"), null); // (B, T, V), tied
  }

  /** Releases parameters and cached position ids. */
  release(): void {
    for (const t of this.params.values()) t.release();
    for (const t of this.#positions.values()) t.release();
    this.#positions.clear();
    this.#zeroBias?.release();
    this.#zeroBias = null;
  }
}
