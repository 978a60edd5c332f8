/**
 * AdamW (torch.optim.AdamW semantics: decoupled weight decay, bias-corrected
 * moments, eps added to sqrt(v-hat)) over a list of parameter tensors.
 *
 * `step()` only records one fused kernel per parameter (gpu/kernels/adamw.ts);
 * nothing waits for the GPU. The gradient can be scaled by a clip factor that
 * lives on the GPU (`gradClip(...).factor`), so clipping costs no read-back.
 *
 * Parameters, m and v are updated in place: they are the long-lived state of
 * training, owned by the model and this optimizer, not values of a scope.
 * The moments are created zeroed at construction and `keep()`-ed, so an
 * optimizer built inside a `tidy` survives it; `dispose()` frees them.
 *
 * The step count is shared by all parameters (one count per optimizer, where
 * torch keeps one per parameter): it only differs from torch for parameters
 * that have no gradient on some steps, which training here never produces.
 */
import { adamwKernel, type ExpertMask } from "../../gpu/kernels/adamw.ts";
import { gpu } from "../../gpu/runtime.ts";
import { ConfigError, fmtShape, ShapeError, TensorError } from "../errors.ts";
import { keep } from "../scope.ts";
import { assertLive, full, type Tensor, zeros } from "../tensor.ts";

/** Options of `AdamW`. */
export interface AdamWOptions {
  /** Learning rate (the default for `step()` without one). */
  lr?: number;
  /** Decay rates of the first and second moments. */
  betas?: [number, number];
  /** Added to sqrt(v-hat) in the denominator. */
  eps?: number;
  /** Decoupled weight decay, applied to parameters `noDecay` does not exempt. */
  weightDecay?: number;
  /** Which parameters get no weight decay (default: `defaultNoDecay`). */
  noDecay?: (p: Tensor) => boolean;
}

/** Defaults of `AdamW` (torch's, with nanoGPT's weight decay of 0.1). */
export const DEFAULT_ADAMW_OPTIONS: Readonly<Required<Omit<AdamWOptions, "noDecay">>> = Object
  .freeze({
    lr: 1e-3,
    betas: [0.9, 0.999] as [number, number],
    eps: 1e-8,
    weightDecay: 0.1,
  });

/**
 * nanoGPT's rule: tensors of fewer than 2 dims (biases, LayerNorm weights
 * and biases) get no weight decay; matrices and embeddings do. Names ending
 * in `.bias` are exempt whatever their shape.
 */
export function defaultNoDecay(p: Tensor): boolean {
  return p.shape.length < 2 || p.name.endsWith(".bias");
}

/** Checkpoint state: the step count and the moments by name (`optim.m.<param>`, `optim.v.<param>`). */
export interface AdamWState {
  /** Steps taken so far (the next step is `step + 1`). */
  step: number;
  /** `optim.m.<name>` and `optim.v.<name>` for every parameter. */
  tensors: Record<string, Tensor>;
}

interface Slot {
  param: Tensor;
  m: Tensor;
  v: Tensor;
  decay: boolean;
}

function checkOptions(o: Required<Omit<AdamWOptions, "noDecay">>): void {
  const [b1, b2] = o.betas;
  const bad = (what: string, v: unknown, want: string) => {
    throw new ConfigError(`AdamW: ${what} must be ${want}, got ${v}`);
  };
  if (!(o.lr >= 0) || !Number.isFinite(o.lr)) bad("lr", o.lr, "a finite number >= 0");
  if (!(b1 >= 0 && b1 < 1)) bad("beta1", b1, "in [0, 1)");
  if (!(b2 >= 0 && b2 < 1)) bad("beta2", b2, "in [0, 1)");
  if (!(o.eps >= 0)) bad("eps", o.eps, ">= 0");
  if (!(o.weightDecay >= 0)) bad("weightDecay", o.weightDecay, ">= 0");
}

/** AdamW over a fixed list of f32 parameters with `requiresGrad`. */
export class AdamW {
  /** Learning rate of the next `step()` without an explicit one. */
  lr: number;
  /** Moment decay rates. */
  readonly betas: readonly [number, number];
  /** Denominator epsilon. */
  readonly eps: number;
  /** Decoupled weight decay for the parameters that take it. */
  readonly weightDecay: number;
  #slots: Slot[];
  #byParam = new Map<Tensor, Slot>();
  #step = 0;
  #one: Tensor;
  #disposed = false;

  /** Creates zeroed moments for every parameter; names must be unique (they key the state). */
  constructor(params: readonly Tensor[], opts: AdamWOptions = {}) {
    const o = { ...DEFAULT_ADAMW_OPTIONS, ...opts };
    checkOptions(o);
    this.lr = o.lr;
    this.betas = [o.betas[0], o.betas[1]];
    this.eps = o.eps;
    this.weightDecay = o.weightDecay;
    const noDecay = opts.noDecay ?? defaultNoDecay;
    const names = new Set<string>();
    assertLive("AdamW", ...params);
    for (const p of params) {
      if (p.dtype !== "f32" || !p.requiresGrad) {
        throw new TensorError(
          `AdamW: parameter ${p.name} ${fmtShape(p.shape)} must be an f32 tensor with ` +
            `requiresGrad (got ${p.dtype}, requiresGrad ${p.requiresGrad})`,
        );
      }
      if (names.has(p.name)) {
        throw new TensorError(`AdamW: two parameters are named ${p.name}: names key the state`);
      }
      names.add(p.name);
    }
    this.#slots = params.map((param) => {
      const slot = {
        param,
        m: keep(zeros(param.shape)),
        v: keep(zeros(param.shape)),
        decay: !noDecay(param),
      };
      this.#byParam.set(param, slot);
      return slot;
    });
    this.#one = keep(full([1], 1));
  }

  /** The parameters, in construction order. */
  get params(): Tensor[] {
    return this.#slots.map((s) => s.param);
  }

  /** Steps taken so far. */
  get stepCount(): number {
    return this.#step;
  }

  /** Whether `p` receives weight decay. */
  decays(p: Tensor): boolean {
    return this.#slot(p, "decays").decay;
  }

  #slot(p: Tensor, op: string): Slot {
    const s = this.#byParam.get(p);
    if (!s) throw new TensorError(`AdamW.${op}: ${p} is not a parameter of this optimizer`);
    return s;
  }

  #live(op: string): void {
    if (this.#disposed) throw new TensorError(`AdamW.${op}: optimizer was disposed`);
  }

  /**
   * Records one update of every parameter that has a gradient, with
   * learning rate `lr` (default `this.lr`, which it then becomes) and each
   * gradient multiplied by `gradScale[0]` (a one-element f32 tensor on the
   * GPU, such as `gradClip(...).factor`; default 1). `masks` marks MoE
   * parameters whose experts that received no token this step must stay
   * untouched (parameter and moments). Does not wait.
   */
  step(lr?: number, gradScale?: Tensor, masks?: Map<Tensor, ExpertMask>): void {
    this.#live("step");
    if (lr !== undefined) {
      if (!(lr >= 0) || !Number.isFinite(lr)) {
        throw new ConfigError(`AdamW.step: lr must be a finite number >= 0, got ${lr}`);
      }
      this.lr = lr;
    }
    if (gradScale) {
      assertLive("AdamW.step", gradScale);
      if (gradScale.size !== 1 || gradScale.dtype !== "f32") {
        throw new ShapeError(
          `AdamW.step: gradScale must be one f32 element, got ${gradScale.dtype} ` +
            fmtShape(gradScale.shape),
        );
      }
    }
    // Validate everything before recording anything, so a bad gradient leaves no half step.
    for (const { param } of this.#slots) {
      assertLive("AdamW.step", param);
      const g = param.grad;
      if (!g) continue;
      assertLive("AdamW.step", g);
      if (g.size !== param.size) {
        throw new ShapeError(
          `AdamW.step: gradient ${fmtShape(g.shape)} does not match ${param.name} ` +
            fmtShape(param.shape),
        );
      }
    }
    this.#step++;
    const ctx = gpu();
    const scale = (gradScale ?? this.#one).buffer;
    for (const s of this.#slots) {
      const g = s.param.grad;
      if (!g) continue;
      adamwKernel(ctx, s.param.buffer, s.m.buffer, s.v.buffer, g.buffer, scale, s.param.size, {
        lr: this.lr,
        beta1: this.betas[0],
        beta2: this.betas[1],
        eps: this.eps,
        weightDecay: s.decay ? this.weightDecay : 0,
        step: this.#step,
      }, masks?.get(s.param));
    }
  }

  /** Releases every parameter's gradient and clears `.grad`. */
  zeroGrad(): void {
    for (const { param } of this.#slots) {
      param.grad?.release();
      param.grad = null;
    }
  }

  /** The moments of `p` (owned by the optimizer: do not release). */
  moments(p: Tensor): { m: Tensor; v: Tensor } {
    this.#live("moments");
    const s = this.#slot(p, "moments");
    return { m: s.m, v: s.v };
  }

  /**
   * Replaces the moments of `p` (after a neuron permutation, say). The
   * optimizer takes ownership of `m` and `v` and releases the old ones.
   */
  setMoments(p: Tensor, m: Tensor, v: Tensor): void {
    this.#live("setMoments");
    const s = this.#slot(p, "setMoments");
    assertLive("AdamW.setMoments", m, v);
    for (const t of [m, v]) {
      if (t.size !== p.size || t.dtype !== "f32") {
        throw new ShapeError(
          `AdamW.setMoments: moment ${fmtShape(t.shape)} ${t.dtype} does not match ` +
            `${p.name} ${fmtShape(p.shape)}`,
        );
      }
    }
    if (s.m !== m) s.m.release();
    if (s.v !== v) s.v.release();
    s.m = keep(m);
    s.v = keep(v);
  }

  /** Step count and moments by checkpoint name (the tensors are the optimizer's own). */
  state(): AdamWState {
    this.#live("state");
    const tensors: Record<string, Tensor> = {};
    for (const s of this.#slots) {
      tensors[`optim.m.${s.param.name}`] = s.m;
      tensors[`optim.v.${s.param.name}`] = s.v;
    }
    return { step: this.#step, tensors };
  }

  /**
   * Restores a saved state: copies every `optim.m.<name>` / `optim.v.<name>`
   * into the moments (recorded copies, no wait) and sets the step count.
   * Every parameter's moments must be present with its element count.
   */
  loadState(state: AdamWState): void {
    this.#live("loadState");
    if (!Number.isInteger(state.step) || state.step < 0) {
      throw new ConfigError(`AdamW.loadState: step must be an integer >= 0, got ${state.step}`);
    }
    const copies: [Tensor, Tensor][] = [];
    for (const s of this.#slots) {
      for (const [kind, dst] of [["m", s.m], ["v", s.v]] as const) {
        const key = `optim.${kind}.${s.param.name}`;
        const src = state.tensors[key];
        if (!src) throw new TensorError(`AdamW.loadState: missing ${key}`);
        assertLive(`AdamW.loadState(${key})`, src);
        if (src.size !== dst.size || src.dtype !== "f32") {
          throw new ShapeError(
            `AdamW.loadState: ${key} is ${src.dtype} ${fmtShape(src.shape)}, ` +
              `expected f32 ${fmtShape(dst.shape)}`,
          );
        }
        copies.push([src, dst]);
      }
    }
    const rec = gpu().recorder;
    for (const [src, dst] of copies) {
      if (src.buffer !== dst.buffer) rec.copy(src.buffer, 0, dst.buffer, 0, dst.bytes);
    }
    this.#step = state.step;
  }

  /** Releases the moments; the optimizer cannot be used afterwards. Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const s of this.#slots) {
      s.m.release();
      s.v.release();
    }
    this.#one.release();
  }
}
