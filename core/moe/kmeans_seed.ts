/** k-means++ seeding of balanced k-means' fresh start. */
import type { Rng } from "../rng.ts";

/** k-means++: the first centre uniform, each next one with probability ∝ squared distance. */
export function kmeansPlusPlus(
  x: Float32Array,
  n: number,
  d: number,
  E: number,
  rng: Rng,
): Float64Array {
  let pick = rng.int(n);
  const c = new Float64Array(E * d);
  const chosen = new Uint8Array(n);
  const minD = new Float64Array(n).fill(Infinity);
  for (let e = 0; e < E; e++) {
    chosen[pick] = 1;
    for (let k = 0; k < d; k++) c[e * d + k] = x[pick * d + k];
    if (e === E - 1) break;
    let total = 0;
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let k = 0; k < d; k++) {
        const diff = x[i * d + k] - x[pick * d + k];
        s += diff * diff;
      }
      if (s < minD[i]) minD[i] = s;
      if (!chosen[i]) total += minD[i];
    }
    pick = -1;
    if (total > 0) {
      const r = rng.uniform() * total;
      let cum = 0;
      for (let i = 0; i < n; i++) {
        if (chosen[i] || minD[i] <= 0) continue;
        cum += minD[i];
        pick = i;
        if (cum > r) break;
      }
    }
    if (pick < 0) {
      // Every remaining point sits on a centre already: draw uniformly among them.
      let j = rng.int(n - e - 1);
      for (let i = 0; i < n; i++) {
        if (chosen[i]) continue;
        if (j-- === 0) {
          pick = i;
          break;
        }
      }
    }
  }
  return c;
}
