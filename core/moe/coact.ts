/** Co-activation features of FFN neurons for `--method coact` clustering. */
import { ConfigError, ShapeError } from "../errors.ts";
import { Rng } from "../rng.ts";

/** Default feature dimension of `coactFeatures` (count-sketch width). */
export const DEFAULT_COACT_DIM = 256;

/** Options of `coactFeatures`. */
export interface CoactOptions {
  /**
   * Feature width: with more probe tokens than this, the token axis is
   * count-sketched down to `dim` (default `DEFAULT_COACT_DIM`); with fewer,
   * the features are the tokens themselves.
   */
  dim?: number;
  /** Use the firing indicator (a > 0) rather than the activation value (default true). */
  binary?: boolean;
  /** Seed of the sketch's hash and signs (default 0). */
  seed?: number;
}

/**
 * Co-activation features for `--method coact`: row j (of d_ff rows) is
 * neuron j's firing vector over the probe tokens (`acts` is (nTokens, d_ff)
 * token-major), so after L2 normalisation two rows are close exactly when
 * the neurons fire on the same tokens (the dot of two binary vectors is
 * their co-activation count). Long token axes are count-sketched (each
 * token adds ±1 times its value to one random column) to `dim` columns,
 * which preserves inner products in expectation at O(nTokens·d_ff) cost.
 * Returns (d_ff, dim') row-major, dim' = min(nTokens, dim).
 */
export function coactFeatures(
  acts: Float32Array,
  nTokens: number,
  dff: number,
  opts: CoactOptions = {},
): Float32Array {
  const fn = "coactFeatures";
  for (const [name, v] of [["nTokens", nTokens], ["dff", dff]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new ConfigError(`${fn}: ${name} must be a positive integer, got ${v}`);
    }
  }
  if (acts.length !== nTokens * dff) {
    throw new ShapeError(
      `${fn}: ${acts.length} activations do not form [${nTokens}, ${dff}] (need ${nTokens * dff})`,
    );
  }
  const dim = opts.dim ?? DEFAULT_COACT_DIM;
  if (!Number.isInteger(dim) || dim < 1) {
    throw new ConfigError(`${fn}: dim must be a positive integer, got ${dim}`);
  }
  const binary = opts.binary ?? true;
  const sketch = nTokens > dim;
  const width = sketch ? dim : nTokens;
  const col = new Uint32Array(nTokens);
  const sign = new Float32Array(nTokens).fill(1);
  if (sketch) {
    const rng = new Rng(opts.seed ?? 0);
    for (let t = 0; t < nTokens; t++) {
      col[t] = rng.int(dim);
      sign[t] = rng.nextU32() & 1 ? 1 : -1;
    }
  } else {
    for (let t = 0; t < nTokens; t++) col[t] = t;
  }
  const out = new Float32Array(dff * width); // (d_ff, width)
  for (let t = 0; t < nTokens; t++) {
    const c = col[t];
    const sg = sign[t];
    const row = t * dff;
    for (let j = 0; j < dff; j++) {
      const a = acts[row + j];
      const v = binary ? (a > 0 ? 1 : 0) : a;
      if (v !== 0) out[j * width + c] += sg * v;
    }
  }
  return out;
}
