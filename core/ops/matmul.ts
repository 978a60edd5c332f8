/**
 * matmul and linear.
 *
 *   matmul(a, b, {transA, transB, bias}) = op(a) · op(b) + bias
 *     a: (..., M, K), or (..., K, M) with transA
 *     b: (..., K, N) with the same leading dims, or (K, N) shared by every
 *        batch; (N, K) with transB
 *     bias: (N), added to every row            -> (..., M, N)
 *   linear(x, weight, bias) = x · weightᵀ + bias, nanoGPT layout:
 *     x: (..., in), weight: (out, in), bias: (out)  -> (..., out)
 *
 * Backward, with G = dOut: d op(a) = G · op(b)ᵀ, d op(b) = op(a)ᵀ · G
 * (transposed back to the stored layout; summed over the batch when b is
 * shared), dBias = column sums of G. Every product runs through
 * `matmulKernel` with the config `gpu/autotune.ts` picked for the adapter
 * (or the one passed in the options), the same for forward and backward.
 */
import { matmulConfig } from "../../gpu/autotune.ts";
import {
  DEFAULT_MATMUL_CONFIGS,
  type MatmulConfig,
  type MatmulDesign,
  matmulKernel,
  type MatmulShape,
} from "../../gpu/kernels/matmul.ts";
import { sumRowsKernel } from "../../gpu/kernels/reduce.ts";
import { gpu } from "../../gpu/runtime.ts";
import { fmtShape, ShapeError } from "../errors.ts";
import { record } from "../tape.ts";
import { assertLive, empty, numel, type Tensor } from "../tensor.ts";

/** Options of `matmul`. */
export interface MatmulOptions {
  /** a is stored (..., K, M). */
  transA?: boolean;
  /** b is stored (..., N, K). */
  transB?: boolean;
  /** (N) vector added to every output row. */
  bias?: Tensor | null;
  /** Force a kernel design or config (tests, benchmarks); default: autotuned. */
  kernel?: MatmulDesign | MatmulConfig;
}

/** Options of `linear`. */
export interface LinearOptions {
  /** Force a kernel design or config; default: autotuned. */
  kernel?: MatmulDesign | MatmulConfig;
}

/** The forced config, else the autotuned one for `rows` output rows and `macs` multiply-adds. */
function resolveConfig(
  k: MatmulDesign | MatmulConfig | undefined,
  macs: number,
  rows: number,
): MatmulConfig {
  if (k === undefined) return matmulConfig(gpu(), macs, rows);
  return typeof k === "string" ? DEFAULT_MATMUL_CONFIGS[k] : k;
}

function checkF32(op: string, ts: Tensor[]): void {
  for (const t of ts) {
    if (t.dtype !== "f32") {
      throw new ShapeError(`${op}: needs f32 tensors, got ${t.dtype} ${fmtShape(t.shape)}`);
    }
  }
}

function sameDims(x: readonly number[], y: readonly number[]): boolean {
  return x.length === y.length && x.every((d, i) => d === y[i]);
}

// ---- matmul ------------------------------------------------------------------

/** The product's sizes: op(a) (..., M, K) by op(b) (K, N); b shared when it has no batch dims. */
interface MatmulDims {
  m: number;
  k: number;
  n: number;
  batchDims: number[];
  batch: number;
  sharedB: boolean;
  transA: boolean;
  transB: boolean;
}

/** Checks the operands of `matmul` and returns the sizes of the product. */
function matmulDims(a: Tensor, b: Tensor, bias: Tensor | null, opts: MatmulOptions): MatmulDims {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const desc = `${fmtShape(a.shape)}${transA ? "ᵀ" : ""} by ${fmtShape(b.shape)}${
    transB ? "ᵀ" : ""
  }`;
  if (a.shape.length < 2 || b.shape.length < 2) {
    throw new ShapeError(`matmul: cannot multiply ${desc}: both need at least 2 dims`);
  }
  const ra = a.shape.length;
  const rb = b.shape.length;
  const [m, ka] = transA ? [a.shape[ra - 1], a.shape[ra - 2]] : [a.shape[ra - 2], a.shape[ra - 1]];
  const [kb, n] = transB ? [b.shape[rb - 1], b.shape[rb - 2]] : [b.shape[rb - 2], b.shape[rb - 1]];
  if (ka !== kb) {
    throw new ShapeError(`matmul: cannot multiply ${desc}: inner dims differ (${ka} vs ${kb})`);
  }
  const batchDims = a.shape.slice(0, ra - 2);
  const sharedB = rb === 2;
  if (!sharedB && !sameDims(batchDims, b.shape.slice(0, rb - 2))) {
    throw new ShapeError(
      `matmul: cannot multiply ${desc}: batch dims differ (b must have a's batch dims or none)`,
    );
  }
  if (bias && !(bias.shape.length === 1 && bias.shape[0] === n)) {
    throw new ShapeError(`matmul: bias ${fmtShape(bias.shape)} does not match [${n}] for ${desc}`);
  }
  const batch = numel(batchDims);
  return { m, k: ka, n, batchDims, batch, sharedB, transA, transB };
}

/** What the backward pass of `matmul` needs from the forward one. */
interface MatmulForward {
  a: Tensor;
  b: Tensor;
  dims: MatmulDims;
  config: MatmulConfig;
}

/** d op(a) = G · op(b)ᵀ, in a's stored layout (op(b) · Gᵀ when transA). */
function matmulGradA(fwd: MatmulForward, dOut: Tensor): Tensor {
  const { a, b, config } = fwd;
  const { m, k, n, batch, sharedB, transA, transB } = fwd.dims;
  const da = empty(a.shape);
  if (!transA) {
    matmulKernel(gpu(), da.buffer, dOut.buffer, b.buffer, null, {
      m,
      k: n,
      n: k,
      batch,
      transB: !transB,
      bStride: sharedB ? 0 : k * n,
    }, config);
  } else {
    matmulKernel(gpu(), da.buffer, b.buffer, dOut.buffer, null, {
      m: k,
      k: n,
      n: m,
      batch,
      transA: transB,
      transB: true,
      aStride: sharedB ? 0 : k * n,
    }, config);
  }
  return da;
}

/**
 * d op(b) = op(a)ᵀ · G, in b's stored layout (Gᵀ · op(a) when transB),
 * summed over the batch when b is shared.
 */
function matmulGradB(fwd: MatmulForward, dOut: Tensor): Tensor {
  const { a, b, config } = fwd;
  const { m, k, n, batch, sharedB, transA, transB } = fwd.dims;
  const db = empty(b.shape);
  // A shared b sums over the batch: fold the batch into the inner dim
  // when the rows of a and G stack that way, else add batch by batch.
  const fold = sharedB && !transA;
  const shape: MatmulShape = fold
    ? { m: 0, k: batch * m, n: 0 }
    : { m: 0, k: m, n: 0, batch, sumBatch: sharedB };
  if (!transB) {
    matmulKernel(gpu(), db.buffer, a.buffer, dOut.buffer, null, {
      ...shape,
      m: k,
      n,
      transA: !transA,
    }, config);
  } else {
    matmulKernel(gpu(), db.buffer, dOut.buffer, a.buffer, null, {
      ...shape,
      m: n,
      n: k,
      transA: true,
      transB: transA,
    }, config);
  }
  return db;
}

/** dBias = column sums of G, (rows, n). */
function biasGrad(dOut: Tensor, rows: number, n: number): Tensor {
  const dBias = empty([n]);
  sumRowsKernel(gpu(), dBias.buffer, dOut.buffer, rows, n);
  return dBias;
}

/** Matrix product of the last two dims, batched over the leading dims. */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const bias = opts.bias ?? null;
  const inputs = bias ? [a, b, bias] : [a, b];
  assertLive("matmul", ...inputs);
  checkF32("matmul", inputs);
  const dims = matmulDims(a, b, bias, opts);
  const { m, k, n, batchDims, batch, sharedB, transA, transB } = dims;
  const config = resolveConfig(opts.kernel, batch * m * k * n, m);
  const out = empty([...batchDims, m, n]); // (..., M, N)
  matmulKernel(gpu(), out.buffer, a.buffer, b.buffer, bias?.buffer ?? null, {
    m,
    k,
    n,
    batch,
    transA,
    transB,
    bStride: sharedB ? 0 : k * n,
  }, config);

  const fwd: MatmulForward = { a, b, dims, config };
  return record("matmul", inputs, out, (dOut, needs) => [
    needs[0] ? matmulGradA(fwd, dOut) : null,
    needs[1] ? matmulGradB(fwd, dOut) : null,
    ...(bias ? [needs[2] ? biasGrad(dOut, batch * m, n) : null] : []),
  ]);
}

// ---- linear ------------------------------------------------------------------

/** `x · weightᵀ + bias` with weight (out, in), as nanoGPT's Linear. */
export function linear(
  x: Tensor,
  weight: Tensor,
  bias?: Tensor | null,
  opts: LinearOptions = {},
): Tensor {
  const inputs = bias ? [x, weight, bias] : [x, weight];
  assertLive("linear", ...inputs);
  checkF32("linear", inputs);
  if (weight.shape.length !== 2) {
    throw new ShapeError(`linear: weight ${fmtShape(weight.shape)} must be (out, in)`);
  }
  const [nOut, nIn] = weight.shape;
  if (x.shape.length < 1 || x.shape[x.shape.length - 1] !== nIn) {
    throw new ShapeError(
      `linear: cannot apply weight ${fmtShape(weight.shape)} to ${fmtShape(x.shape)}: ` +
        `last dim must be ${nIn}`,
    );
  }
  if (bias && !(bias.shape.length === 1 && bias.shape[0] === nOut)) {
    throw new ShapeError(
      `linear: bias ${fmtShape(bias.shape)} does not match weight ${fmtShape(weight.shape)}`,
    );
  }
  const rowCount = numel(x.shape.slice(0, -1));
  const config = resolveConfig(opts.kernel, rowCount * nIn * nOut, rowCount);
  const out = empty([...x.shape.slice(0, -1), nOut]); // (..., out)
  matmulKernel(gpu(), out.buffer, x.buffer, weight.buffer, bias?.buffer ?? null, {
    m: rowCount,
    k: nIn,
    n: nOut,
    transB: true,
  }, config);

  return record("linear", inputs, out, (dOut, needs) => {
    const g = gpu();
    const grads: (Tensor | null)[] = inputs.map(() => null);
    if (needs[0]) {
      const dx = empty(x.shape); // (..., in) = G · W
      matmulKernel(g, dx.buffer, dOut.buffer, weight.buffer, null, {
        m: rowCount,
        k: nOut,
        n: nIn,
      }, config);
      grads[0] = dx;
    }
    if (needs[1]) {
      const dw = empty(weight.shape); // (out, in) = Gᵀ · x
      matmulKernel(g, dw.buffer, dOut.buffer, x.buffer, null, {
        m: nOut,
        k: rowCount,
        n: nIn,
        transA: true,
      }, config);
      grads[1] = dw;
    }
    if (bias && needs[2]) grads[2] = biasGrad(dOut, rowCount, nOut);
    return grads;
  });
}
