/**
 * Routers on the host: choosing a token's top-k experts from router scores,
 * and fitting a learned linear router on probe activations (`--router mlp`).
 */
import { oracleTopK } from "./partition.ts";
import { Rng } from "../rng.ts";

/**
 * Top-k experts of each token by router score `router · h` (ties to the lower
 * expert index): (n, k) expert ids.
 */
export function routerTopK(
  input: Float32Array,
  router: Float32Array,
  n: number,
  C: number,
  E: number,
  k: number,
): Uint32Array {
  const scores = new Float64Array(n * E);
  for (let t = 0; t < n; t++) {
    for (let e = 0; e < E; e++) {
      let s = 0;
      for (let c = 0; c < C; c++) s += router[e * C + c] * input[t * C + c];
      scores[t * E + e] = s;
    }
  }
  return oracleTopK(scores, n, E, k);
}

/**
 * A linear router [E, C] trained to predict each expert's share of a token's
 * activation mass from the FFN input: softmax cross-entropy against the
 * normalised expert masses of `act` (n, dff in expert order), on the first
 * `nTrain` tokens, full-batch Adam for a fixed number of epochs, seeded.
 */
export function trainLinearRouter(
  input: Float32Array,
  act: Float32Array,
  nTrain: number,
  C: number,
  dff: number,
  E: number,
  seed: number,
  epochs = 200,
  lr = 0.01,
): Float32Array {
  const s = dff / E;
  const target = new Float32Array(nTrain * E);
  for (let t = 0; t < nTrain; t++) {
    let total = 0;
    for (let e = 0; e < E; e++) {
      let m = 0;
      for (let j = 0; j < s; j++) m += Math.max(0, act[t * dff + e * s + j]);
      target[t * E + e] = m;
      total += m;
    }
    for (let e = 0; e < E; e++) target[t * E + e] = total > 0 ? target[t * E + e] / total : 1 / E;
  }
  const rng = new Rng(seed);
  const w = Float64Array.from(rng.normalArray(E * C, 0.01));
  const m = new Float64Array(E * C);
  const v = new Float64Array(E * C);
  const grad = new Float64Array(E * C);
  const logits = new Float64Array(E);
  for (let step = 1; step <= epochs; step++) {
    grad.fill(0);
    for (let t = 0; t < nTrain; t++) {
      let mx = -Infinity;
      for (let e = 0; e < E; e++) {
        let z = 0;
        for (let c = 0; c < C; c++) z += w[e * C + c] * input[t * C + c];
        logits[e] = z;
        mx = Math.max(mx, z);
      }
      let sum = 0;
      for (let e = 0; e < E; e++) sum += logits[e] = Math.exp(logits[e] - mx);
      for (let e = 0; e < E; e++) {
        const d = (logits[e] / sum - target[t * E + e]) / nTrain;
        for (let c = 0; c < C; c++) grad[e * C + c] += d * input[t * C + c];
      }
    }
    for (let i = 0; i < w.length; i++) {
      m[i] = 0.9 * m[i] + 0.1 * grad[i];
      v[i] = 0.999 * v[i] + 0.001 * grad[i] * grad[i];
      const mh = m[i] / (1 - 0.9 ** step);
      const vh = v[i] / (1 - 0.999 ** step);
      w[i] -= (lr * mh) / (Math.sqrt(vh) + 1e-8);
    }
  }
  return Float32Array.from(w);
}
