/**
 * Autoregressive decoding with a KV cache and on-GPU sampling: a whole
 * generation is recorded without a host wait, and read once at the end (on
 * a software adapter each host wait costs ~12 ms, more than a token's
 * kernels).
 *
 * - `Decoder` holds, per layer, the keys and values of every position seen
 *   so far, K and V (B, H, ctx, hd), and runs the model's own blocks
 *   (`GPT.block`, `GPT.head`) with two hooks: attention over the cache
 *   instead of over the step's own qkv, and the FFN: in a step, GEMVs over
 *   the weights (`ffnDecode`) or over the selected experts' slices only
 *   (`moeFfnDecode`, core/nn/moe_ffn_decode.ts), the same math as the
 *   model's FFN; its kernels are tagged `ffn/` in a profile, so that
 *   `ssd bench` can time them apart.
 *   - `prefill(tokens (B, T))`: the model's full forward on the prompt,
 *     copying each layer's k and v into the cache; returns the last
 *     position's logits (B, V).
 *   - `step(seq, col)`: embeds the token in column `col` of the token buffer
 *     seq (B, S) at position `col` (read on the GPU; the position is a
 *     uniform), appends its k and v, attends over positions 0..col, runs the
 *     FFN and the head: logits (B, V).
 * - `Generation`: prompt + generated tokens in one (B, P + gen) u32 buffer;
 *   each step samples its token on the GPU (gpu/kernels/sample.ts: greedy,
 *   or temperature + top-k with a counter-based RNG of (seed, step, row))
 *   into the column the next step embeds.
 *
 * Context limit, as nanoGPT's `generate`: the model sees at most the last
 * ctx tokens. While prompt + generated ≤ ctx every token after the first is
 * one cached step. Past ctx the window slides; learned positions then shift
 * with the crop, so the cache cannot be reused, and each further token is a
 * full forward (a prefill) of the last ctx tokens, copied on the GPU from
 * the token buffer: the same tokens nanoGPT's crop gives, still recorded
 * with no host wait. (`ssd bench` keeps prompt + gen ≤ ctx, so it times the
 * cached steps only.)
 */
import { decodeEmbedKernel } from "../../gpu/kernels/decode_embed.ts";
import { kvAttentionKernel, type KvDims, kvFillKernel } from "../../gpu/kernels/kv_attention.ts";
import { sampleKernel } from "../../gpu/kernels/sample.ts";
import { gpu } from "../../gpu/runtime.ts";
import { ConfigError, fmtShape, ShapeError } from "../errors.ts";
import { attention } from "../ops/attention.ts";
import { keep, tidy } from "../scope.ts";
import { noGrad } from "../tape.ts";
import { assertLive, empty, type Tensor, tensor } from "../tensor.ts";
import type { ForwardOptions, GPT } from "./gpt.ts";
import { ffnDecode, MOE_DECODE_MAX_EXPERTS, moeFfnDecode } from "./moe_ffn_decode.ts";

/** Prefix of the FFN kernels' names in a profile taken while decoding (see `Recorder.profileTag`). */
export const FFN_PROFILE_TAG = "ffn/";

/** How the next token is chosen. */
export interface SamplingConfig {
  /** Softmax temperature; 0 = greedy (argmax, ties to the lower id). */
  temperature: number;
  /** Sample among the k most likely tokens; 0 = all of the vocab. */
  topK: number;
  /** Seed of the counter-based RNG: the same seed gives the same tokens. */
  seed: number;
}

/**
 * How text is sampled unless asked otherwise: `ssd generate`'s defaults, and
 * what `ssd bench` decodes with so that its timings are generate's.
 */
export const DEFAULT_SAMPLING: Readonly<SamplingConfig> = Object.freeze({
  temperature: 0.8,
  topK: 40,
  seed: 1337,
});

/** Options of `Decoder`. */
export interface DecoderOptions {
  /** Experts per token for an MoE model (as `ForwardOptions.topK`); absent = dense. */
  topK?: number;
  /** Run the MoE path even at topK = E. */
  forceSparse?: boolean;
}

/** Runs `fn` with its kernels' names prefixed by FFN_PROFILE_TAG in profiles. */
function tagged<T>(fn: () => T): T {
  const rec = gpu().recorder;
  const prev = rec.profileTag;
  rec.profileTag = FFN_PROFILE_TAG;
  try {
    return fn();
  } finally {
    rec.profileTag = prev;
  }
}

/**
 * A `ForwardOptions.ffn` hook that runs the model's own FFN with its
 * kernels tagged FFN_PROFILE_TAG in profiles (for a forward's FFN share).
 */
export const tagFfn: NonNullable<ForwardOptions["ffn"]> = (m, _layer, own) => tagged(() => own(m));

/** Checks a sampling config; throws a one-line ConfigError. */
export function validateSampling(s: SamplingConfig, vocab: number): void {
  if (!(Number.isFinite(s.temperature) && s.temperature >= 0)) {
    throw new ConfigError(
      `sampling: temperature must be a finite number >= 0 (0 = greedy), got ${s.temperature}`,
    );
  }
  if (!(Number.isSafeInteger(s.topK) && s.topK >= 0 && s.topK <= vocab)) {
    throw new ConfigError(
      `sampling: top-k must be an integer in 0..${vocab} (0 = all), got ${s.topK}`,
    );
  }
  if (!Number.isSafeInteger(s.seed)) {
    throw new ConfigError(`sampling: seed must be a safe integer, got ${s.seed}`);
  }
}

function checkTokens(op: string, t: Tensor, B?: number): [number, number] {
  assertLive(op, t);
  if (t.dtype !== "u32" || t.shape.length !== 2 || (B !== undefined && t.shape[0] !== B)) {
    throw new ShapeError(
      `${op}: tokens must be u32 (${B ?? "B"}, T), got ${t.dtype} ${fmtShape(t.shape)}`,
    );
  }
  return [t.shape[0], t.shape[1]];
}

/**
 * Samples one token per row of `logits` (B, V) into column `col` of `seq`
 * (B, S) u32, on the GPU (no read-back). `step` is the RNG counter: the
 * same (seed, step, row) always draws the same number.
 */
export function sampleInto(
  seq: Tensor,
  col: number,
  logits: Tensor,
  sampling: SamplingConfig,
  step: number,
): void {
  const [B, S] = checkTokens("sampleInto", seq);
  assertLive("sampleInto", logits);
  if (logits.dtype !== "f32" || logits.shape.length !== 2 || logits.shape[0] !== B) {
    throw new ShapeError(
      `sampleInto: logits ${fmtShape(logits.shape)} must be f32 (${B}, V) for tokens ${
        fmtShape(seq.shape)
      }`,
    );
  }
  if (!(Number.isInteger(col) && col >= 0 && col < S)) {
    throw new ShapeError(`sampleInto: column ${col} is outside tokens ${fmtShape(seq.shape)}`);
  }
  if (!(Number.isSafeInteger(step) && step >= 0 && step < 2 ** 32)) {
    throw new ShapeError(`sampleInto: step ${step} must be an integer in 0..2^32-1`);
  }
  const V = logits.shape[1];
  validateSampling(sampling, V);
  sampleKernel(gpu(), seq.buffer, logits.buffer, {
    rows: B,
    V,
    inStride: V,
    inOffset: 0,
    outStride: S,
    outCol: col,
  }, { ...sampling, step });
}

/** A GPT with a KV cache for `batch` sequences; see the module comment. */
export class Decoder {
  /** The model decoded. */
  readonly model: GPT;
  /** Sequences decoded together. */
  readonly batch: number;
  /** Experts per token and the MoE path. */
  readonly options: Readonly<DecoderOptions>;
  #k: Tensor[] = [];
  #v: Tensor[] = [];
  #scores: Tensor;
  #dims: KvDims;

  /** Allocates the caches: 2 · n_layer · B · ctx · C floats. */
  constructor(model: GPT, batch: number, options: DecoderOptions = {}) {
    if (!(Number.isSafeInteger(batch) && batch >= 1)) {
      throw new ShapeError(`Decoder: batch must be a positive integer, got ${batch}`);
    }
    const k = options.topK;
    const E = model.moe?.experts;
    if (k !== undefined && !(E !== undefined && Number.isInteger(k) && k >= 1 && k <= E)) {
      throw new ConfigError(
        E === undefined
          ? `Decoder: top-k ${k} needs an MoE model, and this one is dense`
          : `Decoder: top-k must be in 1..${E} (the experts per layer), got ${k}`,
      );
    }
    const c = model.config;
    this.model = model;
    this.batch = batch;
    this.options = Object.freeze({ ...options });
    this.#dims = { B: batch, H: c.n_head, C: c.d_model, ctx: c.ctx };
    const shape = [batch, c.n_head, c.ctx, c.d_model / c.n_head]; // (B, H, ctx, hd)
    for (let i = 0; i < c.n_layer; i++) {
      this.#k.push(keep(empty(shape)));
      this.#v.push(keep(empty(shape)));
    }
    this.#scores = keep(empty([batch, c.n_head, c.ctx])); // (B, H, ctx)
  }

  /** The prefill's FFN: the model's own (many tokens), its kernels tagged for profiles. */
  #prefillFfn = tagFfn;

  /**
   * A step's FFN (B tokens): GEMVs over the weights (`ffnDecode`), or over
   * only the selected experts' slices (`moeFfnDecode`) where the model's
   * own FFN would take the MoE path; tagged for profiles.
   */
  #stepFfn = (m: Tensor, i: number, own: (m: Tensor) => Tensor): Tensor =>
    tagged(() => {
      const model = this.model;
      const E = model.moe?.experts;
      const k = this.options.topK;
      const h = `transformer.h.${i}.mlp.`;
      const w = {
        fcW: model.p(h + "c_fc.weight"),
        fcB: model.params.get(h + "c_fc.bias") ?? null,
        projW: model.p(h + "c_proj.weight"),
        projB: model.params.get(h + "c_proj.bias") ?? null,
      };
      const act = model.config.activation;
      const sparse = E !== undefined && k !== undefined && (k < E || this.options.forceSparse);
      if (!sparse) return ffnDecode(m, w, act);
      if (E > MOE_DECODE_MAX_EXPERTS) return own(m);
      return moeFfnDecode(m, { ...w, router: model.p(h + "router.weight") }, E, k, act);
    });

  #forwardOptions(
    attn: ForwardOptions["attention"],
    ffn: ForwardOptions["ffn"],
  ): ForwardOptions {
    return { topK: this.options.topK, forceSparse: this.options.forceSparse, ffn, attention: attn };
  }

  /**
   * Runs the prompt tokens (B, T), T ≤ ctx, through the model's forward,
   * writing positions 0..T-1 of every layer's cache (unless `fill` is
   * false: the caller will not decode from this prefix), and returns the
   * last position's logits (B, V).
   */
  prefill(tokens: Tensor, fill = true): Tensor {
    const [B, T] = checkTokens("Decoder.prefill", tokens, this.batch);
    const c = this.model.config;
    if (T < 1 || T > c.ctx) {
      throw new ShapeError(
        `Decoder.prefill: prompt length ${T} must be in 1..${c.ctx} (the context) for ${
          fmtShape(tokens.shape)
        }`,
      );
    }
    const g = gpu();
    const V = c.vocab;
    return noGrad(() =>
      tidy(() => {
        const attn = fill
          ? (qkv: Tensor, i: number) => {
            kvFillKernel(g, this.#k[i].buffer, this.#v[i].buffer, qkv.buffer, this.#dims, T);
            return attention(qkv, c.n_head);
          }
          : undefined;
        const opts = this.#forwardOptions(attn, this.#prefillFfn);
        const { logits } = this.model.forward(tokens, undefined, opts); // (B, T, V)
        const last = empty([B, V]); // (B, V)
        for (let b = 0; b < B; b++) {
          g.recorder.copy(logits.buffer, ((b * T + T - 1) * V) * 4, last.buffer, b * V * 4, V * 4);
        }
        return last;
      })
    );
  }

  /**
   * One cached step: embeds the token in column `col` of `seq` (B, S) at
   * position `col` (< ctx), appends its keys and values to the cache (which
   * must hold positions 0..col-1) and returns the next-token logits (B, V).
   */
  step(seq: Tensor, col: number): Tensor {
    const [B, S] = checkTokens("Decoder.step", seq, this.batch);
    const c = this.model.config;
    if (!(Number.isInteger(col) && col >= 0 && col < Math.min(S, c.ctx))) {
      throw new ShapeError(
        `Decoder.step: column ${col} must be in 0..${Math.min(S, c.ctx) - 1} for tokens ${
          fmtShape(seq.shape)
        } and context ${c.ctx}`,
      );
    }
    const g = gpu();
    const m = this.model;
    return noGrad(() =>
      tidy(() => {
        const x = empty([B, 1, c.d_model]); // (B, 1, C)
        decodeEmbedKernel(
          g,
          x.buffer,
          seq.buffer,
          m.p("transformer.wte.weight").buffer,
          m.p(
            "transformer.wpe.weight",
          ).buffer,
          { B, S, C: c.d_model, V: c.vocab, ctx: c.ctx },
          col,
          col,
        );
        const attn = (qkv: Tensor, i: number) => {
          const y = empty([B, 1, c.d_model]); // (B, 1, C)
          kvAttentionKernel(
            g,
            y.buffer,
            this.#k[i].buffer,
            this.#v[i].buffer,
            this.#scores.buffer,
            qkv.buffer,
            this.#dims,
            col,
          );
          return y;
        };
        const opts = this.#forwardOptions(attn, this.#stepFfn);
        let h = x;
        for (let i = 0; i < c.n_layer; i++) h = m.block(h, i, opts);
        return m.head(h).view([B, c.vocab]); // (B, V)
      })
    );
  }

  /** Starts a generation continuing `prompts` (B rows of equal length ≥ 1) by `gen` tokens. */
  start(prompts: ArrayLike<number>[], gen: number, sampling: SamplingConfig): Generation {
    return new Generation(this, prompts, gen, sampling);
  }

  /**
   * Generates `gen` tokens after each prompt, all recorded, then read with
   * one host wait: one Uint32Array of `gen` tokens per row.
   */
  async generate(
    prompts: ArrayLike<number>[],
    gen: number,
    sampling: SamplingConfig,
  ): Promise<Uint32Array[]> {
    const run = this.start(prompts, gen, sampling);
    try {
      run.advance(gen);
      return await run.read();
    } finally {
      run.release();
    }
  }

  /** Releases the caches. */
  release(): void {
    for (const t of [...this.#k, ...this.#v, this.#scores]) t.release();
    this.#k = [];
    this.#v = [];
  }
}

/**
 * One generation in progress: prompt and tokens in a (B, P + gen) u32
 * buffer on the GPU. `advance` records steps (no host wait); `read` reads
 * generated tokens back (one host wait).
 */
export class Generation {
  /** The decoder (and its cache) this generation uses. */
  readonly decoder: Decoder;
  /** (B, P + gen) u32: each row's prompt, then its generated tokens. */
  readonly seq: Tensor;
  /** Prompt length P. */
  readonly promptLength: number;
  /** Tokens to generate. */
  readonly length: number;
  /** How tokens are drawn. */
  readonly sampling: Readonly<SamplingConfig>;
  #done = 0;

  /** Uploads the prompts; records nothing else. */
  constructor(
    decoder: Decoder,
    prompts: ArrayLike<number>[],
    gen: number,
    sampling: SamplingConfig,
  ) {
    const B = decoder.batch;
    const P = prompts[0]?.length ?? 0;
    if (prompts.length !== B || P < 1 || prompts.some((p) => p.length !== P)) {
      throw new ShapeError(
        `Generation: need ${B} prompts of one length >= 1, got lengths [${
          prompts.map((p) => p.length).join(", ")
        }]`,
      );
    }
    if (!(Number.isSafeInteger(gen) && gen >= 0)) {
      throw new ShapeError(`Generation: tokens to generate must be an integer >= 0, got ${gen}`);
    }
    const V = decoder.model.config.vocab;
    validateSampling(sampling, V);
    const S = P + gen;
    const host = new Uint32Array(B * S);
    prompts.forEach((p, b) => {
      for (let t = 0; t < P; t++) {
        const v = p[t];
        if (!(Number.isInteger(v) && v >= 0 && v < V)) {
          throw new ShapeError(
            `Generation: prompt ${b} has token ${v} at ${t}, outside 0..${V - 1}`,
          );
        }
        host[b * S + t] = v;
      }
    });
    this.decoder = decoder;
    this.promptLength = P;
    this.length = gen;
    this.sampling = Object.freeze({ ...sampling });
    this.seq = keep(tensor(host, [B, S], { dtype: "u32" })); // (B, P + gen)
  }

  /** Tokens recorded so far. */
  get done(): number {
    return this.#done;
  }

  /** Records the next `n` tokens (default: all that remain); nothing is read back. */
  advance(n = this.length - this.#done): void {
    if (!(Number.isInteger(n) && n >= 0 && this.#done + n <= this.length)) {
      throw new ShapeError(
        `Generation.advance: ${n} more tokens do not fit (${this.#done} of ${this.length} done)`,
      );
    }
    const rec = gpu().recorder;
    for (let i = 0; i < n; i++) {
      tidy(() => this.#stepOnce());
      // Submit as we go (no wait): the GPU starts while the next steps record.
      rec.flush();
    }
  }

  #stepOnce(): void {
    const d = this.decoder;
    const ctx = d.model.config.ctx;
    const B = d.batch;
    const S = this.seq.shape[1];
    const s = this.#done;
    const L = this.promptLength + s; // columns filled; this step writes column L
    let logits: Tensor;
    if (s > 0 && L <= ctx) {
      logits = d.step(this.seq, L - 1);
    } else {
      // First token, or past ctx: a forward of the window of the last ctx tokens.
      const w = Math.max(0, L - ctx);
      const T = L - w;
      const win = empty([B, T], "u32"); // (B, T)
      for (let b = 0; b < B; b++) {
        gpu().recorder.copy(this.seq.buffer, (b * S + w) * 4, win.buffer, b * T * 4, T * 4);
      }
      logits = d.prefill(win, L < ctx);
    }
    sampleInto(this.seq, L, logits, this.sampling, s);
    this.#done++;
  }

  /**
   * Reads generated tokens [from, to) of every row (one host wait; default:
   * all recorded so far).
   */
  async read(from = 0, to = this.#done): Promise<Uint32Array[]> {
    if (
      !(Number.isInteger(from) && Number.isInteger(to) && 0 <= from && from <= to &&
        to <= this.#done)
    ) {
      throw new ShapeError(`Generation.read: range [${from}, ${to}) is outside 0..${this.#done}`);
    }
    const B = this.decoder.batch;
    const S = this.seq.shape[1];
    const P = this.promptLength;
    if (to === from) return Array.from({ length: B }, () => new Uint32Array(0));
    const bufs = await gpu().recorder.readMany(
      Array.from({ length: B }, (_, b) => ({
        buffer: this.seq.buffer,
        offset: (b * S + P + from) * 4,
        size: (to - from) * 4,
      })),
    );
    return bufs.map((x) => new Uint32Array(x));
  }

  /** Releases the token buffer (the decoder stays). */
  release(): void {
    this.seq.release();
  }
}
