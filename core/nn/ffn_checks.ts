/**
 * Input checks shared by the FFN paths of an MoE-fied layer (inference
 * `moe_ffn.ts`, training `moe_ffn_train.ts`, decode `moe_ffn_decode.ts`):
 * one place for the shapes of c_fc / c_proj / router, the expert count and
 * top-k, the activation, and the grad-mode rule of the inference paths, so
 * the three reject bad input with the same lines.
 */
import { ConfigError, fmtShape, ShapeError, TensorError } from "../errors.ts";
import { isGradEnabled } from "../tape.ts";
import { assertLive, numel, type Tensor } from "../tensor.ts";

/** The dense FFN tensors (nanoGPT layouts). */
export interface FfnTensors {
  /** c_fc.weight [d_ff, C]. */
  fcW: Tensor;
  /** c_fc.bias [d_ff] or null. */
  fcB: Tensor | null;
  /** c_proj.weight [C, d_ff]. */
  projW: Tensor;
  /** c_proj.bias [C] or null. */
  projB: Tensor | null;
}

/** Activations the FFN kernels implement. */
const ACTIVATIONS = new Set(["relu", "gelu"]);

/**
 * Checks h (N, C) or (B, T, C) against the FFN tensors (plus `extra`
 * inputs such as the router), all live and f32, and the activation; with
 * `inference`, also that no input needs a gradient while grad mode is on
 * (the path records no backward). Returns [N, C, d_ff].
 */
export function checkFfnInputs(
  op: string,
  h: Tensor,
  w: FfnTensors,
  activation: string,
  extra: Tensor[],
  inference: string | null,
): [number, number, number] {
  const bias = [w.fcB, w.projB].filter((b): b is Tensor => b !== null);
  const inputs = [h, w.fcW, w.projW, ...extra, ...bias];
  assertLive(op, ...inputs);
  for (const t of inputs) {
    if (t.dtype !== "f32") {
      throw new ShapeError(`${op}: ${t.name} must be f32, got ${t.dtype} ${fmtShape(t.shape)}`);
    }
  }
  if (w.fcW.shape.length !== 2 || w.fcW.shape[0] < 1 || w.fcW.shape[1] < 1) {
    throw new ShapeError(`${op}: c_fc weight ${fmtShape(w.fcW.shape)} must be [d_ff, C]`);
  }
  const [dff, C] = w.fcW.shape;
  if (h.shape.length < 2 || h.shape[h.shape.length - 1] !== C) {
    throw new ShapeError(
      `${op}: input ${fmtShape(h.shape)} does not match c_fc weight ${fmtShape(w.fcW.shape)}: ` +
        `need (N, ${C}) or (B, T, ${C})`,
    );
  }
  if (w.projW.shape.length !== 2 || w.projW.shape[0] !== C || w.projW.shape[1] !== dff) {
    throw new ShapeError(
      `${op}: c_proj weight ${fmtShape(w.projW.shape)} must be [${C}, ${dff}] for c_fc weight ` +
        fmtShape(w.fcW.shape),
    );
  }
  if (w.fcB && !(w.fcB.shape.length === 1 && w.fcB.shape[0] === dff)) {
    throw new ShapeError(`${op}: c_fc bias ${fmtShape(w.fcB.shape)} must be [${dff}]`);
  }
  if (w.projB && !(w.projB.shape.length === 1 && w.projB.shape[0] === C)) {
    throw new ShapeError(`${op}: c_proj bias ${fmtShape(w.projB.shape)} must be [${C}]`);
  }
  if (!ACTIVATIONS.has(activation)) {
    throw new ConfigError(`${op}: unknown activation ${activation}: use relu or gelu`);
  }
  if (inference !== null && isGradEnabled()) {
    const t = inputs.find((x) => x.requiresGrad);
    if (t) {
      throw new TensorError(
        `${op}: ${t.name} ${fmtShape(t.shape)} requires a gradient, but ${inference} is an ` +
          `inference path with no backward: run it inside noGrad()`,
      );
    }
  }
  return [numel(h.shape.slice(0, -1)), C, dff];
}

/** Checks E (divides d_ff), the router [E, C] and 1 ≤ k ≤ E. */
export function checkExperts(
  op: string,
  router: Tensor,
  E: number,
  k: number,
  C: number,
  dff: number,
): void {
  if (!Number.isInteger(E) || E < 1 || dff % E !== 0) {
    throw new ConfigError(`${op}: ${E} experts do not divide d_ff ${dff}`);
  }
  if (router.shape.length !== 2 || router.shape[0] !== E || router.shape[1] !== C) {
    throw new ShapeError(
      `${op}: router ${fmtShape(router.shape)} must be [${E}, ${C}] (experts, C)`,
    );
  }
  if (!Number.isInteger(k) || k < 1 || k > E) {
    throw new ConfigError(
      `${op}: top-k ${k} is out of range for ${E} experts: need 1 <= k <= ${E}`,
    );
  }
}
