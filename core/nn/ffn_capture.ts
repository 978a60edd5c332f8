/**
 * Captures every FFN layer's activations (N, d_ff) and inputs (N, C) of a
 * dense forward over a token stream, on the host, for clustering by
 * co-activation, router fitting and coverage. Windows follow the eval
 * protocol (core/data.ts), 64 per forward, one host wait per forward.
 */
import { evalWindows, packEvalBatch, windowGroups } from "../data.ts";
import type { GPT } from "./gpt.ts";
import { keep, tidy } from "../scope.ts";
import { noGrad } from "../tape.ts";
import { readAll, type Tensor, tensor } from "../tensor.ts";

/** One layer's captured FFN, row-major. */
export interface FfnCapture {
  /** Tokens captured. */
  n: number;
  /** Activations after the nonlinearity, (n, d_ff). */
  act: Float32Array;
  /** FFN inputs (ln_2 outputs), (n, C). */
  input: Float32Array;
}

const WINDOWS_PER_FORWARD = 64;

/** Runs `model` densely over `tokens` and returns each layer's FFN activations and inputs. */
export async function captureFfn(model: GPT, tokens: Uint8Array): Promise<FfnCapture[]> {
  const { ctx, n_layer: L, d_ff: F, d_model: C } = model.config;
  const windows = evalWindows(tokens, ctx);
  const n = windows.reduce((s, w) => s + w.scored, 0);
  const out = Array.from({ length: L }, () => ({
    n,
    act: new Float32Array(n * F),
    input: new Float32Array(n * C),
  }));
  const groups = windowGroups(windows, ctx, WINDOWS_PER_FORWARD);
  let row = 0;
  for (const group of groups) {
    const T = group[0].scored;
    const packed = packEvalBatch(tokens, group, T);
    const caught: Tensor[] = [];
    noGrad(() =>
      tidy(() => {
        model.forward(tensor(packed.x, [group.length, T], { dtype: "u32" }), undefined, {
          probe: (act, input) => caught.push(keep(act), keep(input)),
        });
      })
    );
    const host = await readAll(caught);
    for (const t of caught) t.release();
    const rows = group.length * T;
    for (let l = 0; l < L; l++) {
      out[l].act.set(host[2 * l] as Float32Array, row * F);
      out[l].input.set(host[2 * l + 1] as Float32Array, row * C);
    }
    row += rows;
  }
  return out;
}
