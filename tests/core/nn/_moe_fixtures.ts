/**
 * Shared data and float64 references of the MoE FFN tests (inference
 * `moe_ffn_test.ts`, training `moe_ffn_train_test.ts`, decode
 * `moe_ffn_decode_test.ts`): random weights, inputs with planted router
 * scores (so top-k never hinges on a near-tie), the masked MoE FFN in
 * float64, and the upload to GPU tensors.
 */
import { solve } from "../../_ref/linear_solve.ts";
import type { MoeActivation, MoeWeights } from "../../../core/nn/moe_ffn.ts";
import { Rng } from "../../../core/rng.ts";
import { type Tensor, tensor } from "../../../core/tensor.ts";

/** Shape of one MoE FFN case. */
export interface MoeCase {
  N: number;
  C: number;
  E: number;
  dff: number;
  bias: boolean;
}

/** Host data of one case. */
export interface MoeData {
  h: Float32Array; // (N, C)
  fcW: Float32Array; // (dff, C)
  fcB: Float32Array | null; // (dff)
  projW: Float32Array; // (C, dff)
  projB: Float32Array | null; // (C)
  router: Float32Array; // (E, C)
  G: Float32Array; // (N, C) an output gradient, drawn last
}

/**
 * Random weights and output gradient; inputs whose router scores are
 * planted: token t's scores are a random permutation of {0, …, E−1} minus
 * (E−1)/2, with expert `never` (when given) always lowest, via h = z + Rᵀy,
 * (R Rᵀ) y = s − R z, z random. Needs C ≥ E; with C < E h stays random
 * (for k = E checks only).
 */
export function makeMoeData(c: MoeCase, seed: number, never: number | null = null): MoeData {
  const rng = new Rng(seed);
  const { N, C, E, dff } = c;
  const R = Float32Array.from(rng.normalArray(E * C, 1));
  const h = new Float64Array(N * C);
  const RRt = new Float64Array(E * E);
  for (let i = 0; i < E; i++) {
    for (let j = 0; j < E; j++) {
      let s = 0;
      for (let d = 0; d < C; d++) s += R[i * C + d] * R[j * C + d];
      RRt[i * E + j] = s;
    }
  }
  for (let t = 0; t < N; t++) {
    const z = rng.normalArray(C, 1);
    if (C < E) {
      h.set(z, t * C);
      continue;
    }
    const vals = Array.from(
      { length: E - (never === null ? 0 : 1) },
      (_, i) => i + (never === null ? 0 : 1),
    );
    rng.shuffle(vals);
    const perm: number[] = [];
    for (let e = 0, i = 0; e < E; e++) perm.push(e === never ? 0 : vals[i++]);
    const rhs = new Float64Array(E);
    for (let e = 0; e < E; e++) {
      let rz = 0;
      for (let d = 0; d < C; d++) rz += R[e * C + d] * z[d];
      rhs[e] = perm[e] - (E - 1) / 2 - rz;
    }
    const y = solve(RRt, rhs, E);
    for (let d = 0; d < C; d++) {
      let v = z[d];
      for (let e = 0; e < E; e++) v += R[e * C + d] * y[e];
      h[t * C + d] = v;
    }
  }
  return {
    h: Float32Array.from(h),
    fcW: Float32Array.from(rng.normalArray(dff * C, 0.3)),
    fcB: c.bias ? Float32Array.from(rng.normalArray(dff, 0.1)) : null,
    projW: Float32Array.from(rng.normalArray(C * dff, 0.3)),
    projB: c.bias ? Float32Array.from(rng.normalArray(C, 0.1)) : null,
    router: R,
    G: Float32Array.from(rng.normalArray(N * C, 1)),
  };
}

const K0 = Math.sqrt(2 / Math.PI);

/** The activation in float64 (GELU: the tanh form, as the kernels). */
export function refAct(a: MoeActivation, x: number): number {
  return a === "relu" ? Math.max(x, 0) : 0.5 * x * (1 + Math.tanh(K0 * (x + 0.044715 * x ** 3)));
}

/** Its derivative in float64. */
export function refDact(a: MoeActivation, x: number): number {
  if (a === "relu") return x > 0 ? 1 : 0;
  const t = Math.tanh(K0 * (x + 0.044715 * x ** 3));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * K0 * (1 + 3 * 0.044715 * x * x);
}

/** Top-k expert ids of each token in float64, best first, ties to the lower index. */
export function refTopk(d: MoeData, c: MoeCase, k: number): number[][] {
  const { N, C, E } = c;
  const out: number[][] = [];
  for (let t = 0; t < N; t++) {
    const s = Array.from({ length: E }, (_, e) => {
      let v = 0;
      for (let j = 0; j < C; j++) v += d.router[e * C + j] * d.h[t * C + j];
      return v;
    });
    const order = Array.from({ length: E }, (_, e) => e).sort((a, b) => s[b] - s[a] || a - b);
    out.push(order.slice(0, k));
  }
  return out;
}

/** The MoE FFN with unselected experts masked, in float64 (k = E: the dense FFN). */
export function refMoe(d: MoeData, c: MoeCase, k: number, a: MoeActivation): Float64Array {
  const { N, C, E, dff } = c;
  const s = dff / E;
  const sel = refTopk(d, c, k);
  const out = new Float64Array(N * C);
  for (let t = 0; t < N; t++) {
    for (const e of sel[t]) {
      for (let n = e * s; n < (e + 1) * s; n++) {
        let pre = d.fcB ? d.fcB[n] : 0;
        for (let j = 0; j < C; j++) pre += d.fcW[n * C + j] * d.h[t * C + j];
        const v = refAct(a, pre);
        for (let j = 0; j < C; j++) out[t * C + j] += v * d.projW[j * dff + n];
      }
    }
    if (d.projB) { for (let j = 0; j < C; j++) out[t * C + j] += d.projB[j]; }
  }
  return out;
}

/** The case's input and weights as GPU tensors (named as the model's); the caller's scope owns them. */
export function uploadMoe(
  d: MoeData,
  c: MoeCase,
  opts: { requiresGrad?: boolean } = {},
): { h: Tensor; w: MoeWeights } {
  const { N, C, E, dff } = c;
  const t = (a: Float32Array, shape: number[], name: string) =>
    tensor(a, shape, { name, requiresGrad: opts.requiresGrad });
  return {
    h: t(d.h, [N, C], "h"),
    w: {
      fcW: t(d.fcW, [dff, C], "c_fc.weight"),
      fcB: d.fcB ? t(d.fcB, [dff], "c_fc.bias") : null,
      projW: t(d.projW, [C, dff], "c_proj.weight"),
      projB: d.projB ? t(d.projB, [C], "c_proj.bias") : null,
      router: t(d.router, [E, C], "router.weight"),
    },
  };
}
