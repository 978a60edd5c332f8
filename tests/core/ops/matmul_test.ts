/**
 * matmul / linear: forward against a float64 reference and backward against
 * finite differences (checkOp), for every kernel design forced explicitly,
 * each transpose form, batched and shared-B, with and without bias, on odd
 * shapes and on multiples of the tiles. Tolerances: forward atol 1e-4 /
 * rtol 1e-4 (f32 sums of up to 65 unit-normal products), gradients atol 1e-3
 * / rtol 1e-3 (checkOp's default; the reference is bilinear, so central
 * differences are exact up to float64 rounding).
 */
import assert from "node:assert/strict";
import { setAutotune } from "../../../gpu/autotune.ts";
import {
  MATMUL_CANDIDATES,
  type MatmulConfig,
  type MatmulDesign,
  matmulKernel,
  setMatmulTextureLimit,
  SMALL_M_MATMUL_CONFIG,
} from "../../../gpu/kernels/matmul.ts";
import { gpu } from "../../../gpu/runtime.ts";
import { ShapeError, TensorError } from "../../../core/errors.ts";
import { linear, matmul } from "../../../core/ops/matmul.ts";
import { tidy } from "../../../core/scope.ts";
import { tensor } from "../../../core/tensor.ts";
import { assertAllClose, checkOp, randn, setupGpu } from "../../_helpers.ts";

setAutotune(false);
await setupGpu();

const FWD = { atol: 1e-4, rtol: 1e-4 };
const DESIGNS: MatmulDesign[] = ["shared", "register", "texture"];

interface Case {
  batch: number[];
  m: number;
  k: number;
  n: number;
  transA: boolean;
  transB: boolean;
  sharedB: boolean;
  bias: boolean;
}

/** float64 reference: (batch..., M, N) = op(a) · op(b) (+ bias). */
function refMatmul(c: Case) {
  const nb = c.batch.reduce((x, y) => x * y, 1);
  return (a: Float64Array, b: Float64Array, bias?: Float64Array): Float64Array => {
    const out = new Float64Array(nb * c.m * c.n);
    for (let z = 0; z < nb; z++) {
      const ao = z * c.m * c.k;
      const bo = c.sharedB ? 0 : z * c.k * c.n;
      for (let i = 0; i < c.m; i++) {
        for (let j = 0; j < c.n; j++) {
          let s = bias ? bias[j] : 0;
          for (let k = 0; k < c.k; k++) {
            const av = c.transA ? a[ao + k * c.m + i] : a[ao + i * c.k + k];
            const bv = c.transB ? b[bo + j * c.k + k] : b[bo + k * c.n + j];
            s += av * bv;
          }
          out[(z * c.m + i) * c.n + j] = s;
        }
      }
    }
    return out;
  };
}

function shapes(c: Case): number[][] {
  const a = [...c.batch, ...(c.transA ? [c.k, c.m] : [c.m, c.k])];
  const b = [...(c.sharedB ? [] : c.batch), ...(c.transB ? [c.n, c.k] : [c.k, c.n])];
  return c.bias ? [a, b, [c.n]] : [a, b];
}

function label(c: Case): string {
  const form = `${c.transA ? "T" : "N"}${c.transB ? "T" : "N"}`;
  const batch = c.batch.length ? `[${c.batch}]${c.sharedB ? " shared-B" : ""} ` : "";
  return `${batch}${c.m}x${c.k}x${c.n} ${form}${c.bias ? " +bias" : ""}`;
}

async function check(
  c: Case,
  kernel: MatmulDesign | MatmulConfig | undefined,
  noGrad = false,
): Promise<void> {
  try {
    await checkOp({
      inputs: shapes(c).map((shape) => ({ shape })),
      gpu: (a, b, bias) => matmul(a, b, { transA: c.transA, transB: c.transB, bias, kernel }),
      ref: refMatmul(c),
      fwd: FWD,
      noGrad,
    });
  } catch (e) {
    // Name the failing case: checkOp only knows values.
    (e as Error).message = `${label(c)}: ${(e as Error).message}`;
    throw e;
  }
}

const base = { batch: [], transA: false, transB: false, sharedB: false, bias: false };
const FORMS: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];

for (const design of DESIGNS) {
  Deno.test(`matmul() [${design}] matches reference and gradients in every transpose form`, async () => {
    for (const [transA, transB] of FORMS) {
      for (const bias of [false, true]) {
        await check({ ...base, m: 7, k: 13, n: 5, transA, transB, bias }, design);
      }
    }
  });

  Deno.test(`matmul() [${design}] handles 1x1x1 and 33x65x17`, async () => {
    await check({ ...base, m: 1, k: 1, n: 1, bias: true }, design);
    await check({ ...base, m: 1, k: 1, n: 1, transA: true, transB: true }, design);
    await check({ ...base, m: 33, k: 65, n: 17, bias: true }, design);
    await check({ ...base, m: 33, k: 65, n: 17, transA: true, transB: true }, design, true);
  });

  Deno.test(`matmul() [${design}] on multiples of the tile`, async () => {
    await check({ ...base, m: 64, k: 8, n: 128, transB: true, bias: true }, design);
    await check({ ...base, m: 128, k: 64, n: 128, transA: true }, design, true);
  });

  Deno.test(`matmul() [${design}] batched, both operands`, async () => {
    await check({ ...base, batch: [2, 3], m: 5, k: 7, n: 6, bias: true }, design);
    await check({ ...base, batch: [3], m: 4, k: 9, n: 5, transA: true, transB: true }, design);
  });

  Deno.test(`matmul() [${design}] batched with B shared across the batch`, async () => {
    for (const [transA, transB] of FORMS) {
      await check(
        { ...base, batch: [3], m: 5, k: 7, n: 6, sharedB: true, transA, transB, bias: transB },
        design,
      );
    }
  });

  Deno.test(`linear() [${design}] matches x·Wᵀ + b and its gradients`, async () => {
    for (
      const [lead, nIn, nOut, bias] of [[[2, 3], 13, 5, true], [[4], 8, 12, false], [
        [],
        7,
        3,
        true,
      ]] as [
        number[],
        number,
        number,
        boolean,
      ][]
    ) {
      const rows = lead.reduce((x, y) => x * y, 1);
      const c: Case = { ...base, m: rows, k: nIn, n: nOut, transB: true, bias };
      await checkOp({
        inputs: [
          { shape: [...lead, nIn] },
          { shape: [nOut, nIn] },
          ...(bias ? [{ shape: [nOut] }] : []),
        ],
        gpu: (x, w, b) => linear(x, w, b, { kernel: design }),
        ref: refMatmul(c),
        fwd: FWD,
      });
    }
  });
}

Deno.test("matmul() and linear() with the default config, small and large", async () => {
  // 64×128×64 has 2^19 multiply-adds: the texture design on llvmpipe; 7×13×5 the small config.
  await check({ ...base, m: 64, k: 128, n: 64, transB: true, bias: true }, undefined, true);
  await check({ ...base, batch: [2], m: 7, k: 13, n: 5, sharedB: true, bias: true }, undefined);
  await checkOp({
    inputs: [{ shape: [3, 13] }, { shape: [5, 13] }, { shape: [5] }],
    gpu: (x, w, b) => linear(x, w, b),
    ref: refMatmul({ ...base, m: 3, k: 13, n: 5, transB: true, bias: true }),
    fwd: FWD,
  });
});

Deno.test("matmul() [texture] splits products whose textures pass the device limit", async () => {
  // A pretend limit of 8 texels forces every split: batch groups, rows,
  // columns (with the bias offset) and K slices that accumulate.
  setMatmulTextureLimit(8);
  try {
    await check({ ...base, m: 33, k: 65, n: 17, bias: true }, "texture");
    await check({ ...base, batch: [3], m: 7, k: 13, n: 40, transA: true, bias: true }, "texture");
    await check({ ...base, batch: [2], m: 5, k: 9, n: 6, sharedB: true, transB: true }, "texture");
  } finally {
    setMatmulTextureLimit(null);
  }
});

Deno.test("matmul() is correct with every autotune candidate tile", async () => {
  for (const config of [...MATMUL_CANDIDATES, SMALL_M_MATMUL_CONFIG]) {
    await check({ ...base, m: 33, k: 65, n: 17, transB: true, bias: true }, config, true);
    await check({ ...base, batch: [2], m: 7, k: 13, n: 5, transA: true }, config, true);
  }
});

// Non-default tiles of each design, for the kernel-level test.
const DEFAULTS: Record<MatmulDesign, Omit<MatmulConfig, "design">> = {
  shared: { tm: 4, tn: 4, wx: 16, wy: 16, bk: 16 },
  register: { tm: 4, tn: 8, wx: 8, wy: 8 },
  texture: { tm: 8, tn: 8, wx: 8, wy: 8 },
};

Deno.test("matmulKernel() accumulates into the output and sums batches", async () => {
  const g = gpu();
  for (const design of DESIGNS) {
    const [m, k, n, batch] = [5, 6, 7, 3];
    const a = randn(batch * m * k, 1);
    const b = randn(batch * k * n, 2);
    const c0 = randn(m * n, 3);
    const out = tidy(() => {
      const ta = tensor(a, [batch, m, k]);
      const tb = tensor(b, [batch, k, n]);
      const tc = tensor(c0, [m, n]);
      matmulKernel(g, tc.buffer, ta.buffer, tb.buffer, null, {
        m,
        k,
        n,
        batch,
        sumBatch: true,
        accumulate: true,
      }, { design, ...DEFAULTS[design] });
      return tc;
    });
    const got = await out.data();
    out.release();
    const expected = Float64Array.from(c0);
    for (let z = 0; z < batch; z++) {
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          for (let kk = 0; kk < k; kk++) {
            expected[i * n + j] += a[(z * m + i) * k + kk] * b[(z * k + kk) * n + j];
          }
        }
      }
    }
    assertAllClose(got, expected, FWD, `${design} accumulate`);
  }
});

// ---- bad input ----------------------------------------------------------------

Deno.test("matmul() rejects an inner-dim mismatch naming the op and shapes", () => {
  tidy(() => {
    const a = tensor(randn(6, 1), [2, 3]);
    const b = tensor(randn(20, 2), [4, 5]);
    assert.throws(() => matmul(a, b), (e: Error) => {
      assert.ok(e instanceof ShapeError);
      assert.match(
        e.message,
        /^matmul: cannot multiply \[2, 3\] by \[4, 5\]: inner dims differ \(3 vs 4\)$/,
      );
      return true;
    });
    assert.throws(
      () => matmul(a, b, { transA: true }),
      /matmul: .*\[2, 3\]ᵀ by \[4, 5\].*\(2 vs 4\)/,
    );
  });
});

Deno.test("matmul() rejects a wrong bias shape, mismatched batches and 1-D inputs", () => {
  tidy(() => {
    const a = tensor(randn(6, 1), [2, 3]);
    const b = tensor(randn(12, 2), [3, 4]);
    const bias = tensor(randn(3, 3), [3]);
    assert.throws(() => matmul(a, b, { bias }), (e: Error) => {
      assert.ok(e instanceof ShapeError);
      assert.match(e.message, /^matmul: bias \[3\] does not match \[4\] for \[2, 3\] by \[3, 4\]$/);
      return true;
    });
    const a3 = tensor(randn(12, 4), [2, 2, 3]);
    const b3 = tensor(randn(36, 5), [3, 3, 4]);
    assert.throws(() => matmul(a3, b3), /matmul: .*\[2, 2, 3\] by \[3, 3, 4\].*batch dims differ/);
    const v = tensor(randn(3, 6), [3]);
    assert.throws(
      () => matmul(v, b),
      (e: Error) => e instanceof ShapeError && /matmul: .*\[3\] by \[3, 4\]/.test(e.message),
    );
    assert.throws(() => matmul(a, tensor([1, 2, 3], [3], { dtype: "u32" })), /matmul: needs f32/);
  });
});

Deno.test("matmul() and linear() reject released inputs naming the op", () => {
  tidy(() => {
    const a = tensor(randn(6, 1), [2, 3]);
    const b = tensor(randn(12, 2), [3, 4]);
    b.release();
    assert.throws(() => matmul(a, b), (e: Error) => {
      assert.ok(e instanceof TensorError);
      assert.match(e.message, /^matmul: input 1 \(.* \[3, 4\]\) was used after release\(\)$/);
      return true;
    });
    const w = tensor(randn(12, 3), [4, 3]);
    w.release();
    assert.throws(() => linear(a, w), /^TensorError: linear: input 1 .*\[4, 3\]/);
  });
});

Deno.test("linear() rejects a weight that does not fit x and a wrong bias", () => {
  tidy(() => {
    const x = tensor(randn(6, 1), [2, 3]);
    const w = tensor(randn(8, 2), [2, 4]);
    assert.throws(() => linear(x, w), (e: Error) => {
      assert.ok(e instanceof ShapeError);
      assert.match(
        e.message,
        /^linear: cannot apply weight \[2, 4\] to \[2, 3\]: last dim must be 4$/,
      );
      return true;
    });
    const w2 = tensor(randn(6, 2), [2, 3]);
    assert.throws(
      () => linear(x, w2, tensor([1, 2, 3], [3])),
      /^ShapeError: linear: bias \[3\] does not match weight \[2, 3\]$/,
    );
    assert.throws(
      () => linear(x, tensor(randn(3, 3), [3])),
      /linear: weight \[3\] must be \(out, in\)/,
    );
  });
});
