/**
 * The dot products of balanced k-means' distance matrix, points against
 * centroids: a matmul on the GPU, or float64 sums on the host, both rounded
 * to f32 so the two paths differ only by accumulation error.
 */
import { GpuError } from "../errors.ts";
import { matmul } from "../ops/matmul.ts";
import { type Tensor, tensor } from "../tensor.ts";
import { gpu } from "../../gpu/runtime.ts";

/** Dot products (n, E) of the points with the f32 centroids, rounded to f32. */
export interface DotEngine {
  readonly device: "gpu" | "host";
  dots(c: Float32Array): Promise<Float32Array>;
  release(): void;
}

/** Host dot products: float64 sums over the points' rows, rounded to f32. */
export function hostEngine(x: Float32Array, n: number, d: number, E: number): DotEngine {
  return {
    device: "host",
    dots(c) {
      const out = new Float32Array(n * E);
      for (let i = 0; i < n; i++) {
        const xo = i * d;
        for (let e = 0; e < E; e++) {
          const co = e * d;
          // Four partial sums: faster in V8, still float64 before the final f32 rounding.
          let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
          let k = 0;
          for (; k + 3 < d; k += 4) {
            s0 += x[xo + k] * c[co + k];
            s1 += x[xo + k + 1] * c[co + k + 1];
            s2 += x[xo + k + 2] * c[co + k + 2];
            s3 += x[xo + k + 3] * c[co + k + 3];
          }
          for (; k < d; k++) s0 += x[xo + k] * c[co + k];
          out[i * E + e] = s0 + s1 + s2 + s3;
        }
      }
      return Promise.resolve(out);
    },
    release() {},
  };
}

/** GPU dot products: the points stay uploaded; one matmul and read-back per call. */
export function gpuEngine(x: Float32Array, n: number, d: number, E: number): DotEngine {
  const xt: Tensor = tensor(x, [n, d]);
  return {
    device: "gpu",
    async dots(c) {
      const ct = tensor(c, [E, d]);
      const out = matmul(xt, ct, { transB: true }); // (n, E)
      try {
        return await out.data();
      } finally {
        ct.release();
        out.release();
      }
    },
    release() {
      xt.release();
    },
  };
}

/** Whether a GPU runtime has been opened in this process. */
export function gpuOpen(): boolean {
  try {
    gpu();
    return true;
  } catch (e) {
    // "auto" falls back to the host when no GPU runtime was opened (pure-CPU callers).
    if (e instanceof GpuError) return false;
    throw e;
  }
}
