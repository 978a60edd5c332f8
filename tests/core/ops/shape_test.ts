import assert, { throws } from "node:assert/strict";
import { permute, reshape, transpose } from "../../../core/ops/shape.ts";
import { ShapeError, TensorError } from "../../../core/errors.ts";
import { tensor } from "../../../core/tensor.ts";
import { planPermute } from "../../../gpu/kernels/transpose.ts";
import { checkOp, setupGpu } from "../../_helpers.ts";

await setupGpu();

// Tolerances: forward is an exact copy (atol 0, rtol 0); backward vs central
// finite differences (eps 1e-6, float64) atol 1e-6 / rtol 1e-6, since the
// op is linear and the gradient is the upstream values moved.
const EXACT = { atol: 0, rtol: 0 };
const BWD = { atol: 1e-6, rtol: 1e-6 };

/** Float64 reference permute: output dim k is input dim perm[k]. */
function permuteRef(shape: number[], perm: number[]) {
  return (x: Float64Array) => {
    const nd = shape.length;
    const inStride = new Array<number>(nd);
    let s = 1;
    for (let k = nd - 1; k >= 0; k--) {
      inStride[k] = s;
      s *= shape[k];
    }
    const outShape = perm.map((k) => shape[k]);
    const out = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) {
      let rest = i;
      let src = 0;
      for (let k = nd - 1; k >= 0; k--) {
        src += (rest % outShape[k]) * inStride[perm[k]];
        rest = Math.floor(rest / outShape[k]);
      }
      out[i] = x[src];
    }
    return out;
  };
}

const PERMS: [number[], number[]][] = [
  [[7, 13], [1, 0]],
  [[1, 1], [1, 0]],
  [[33, 65], [1, 0]],
  [[2, 3, 17], [2, 0, 1]],
  [[2, 3, 17], [1, 2, 0]],
  [[2, 3, 17], [0, 2, 1]],
  [[2, 3, 17], [0, 1, 2]], // identity: a plain copy
  [[2, 3, 4, 5], [0, 2, 1, 3]], // attention-style head split, scalar path
  [[2, 3, 5, 8], [0, 2, 1, 3]], // the same, contiguous run of 8: vec4 path
  [[4, 8, 12], [1, 0, 2]], // vec4 path, 3-D, runs of 1 vec4
  [[3, 2, 16], [1, 0, 2]], // vec4 path, runs of 4 vec4s
  [[3, 2, 6], [1, 0, 2]], // scalar path, runs of 2
  [[3, 1, 4, 2], [3, 2, 1, 0]], // size-1 dim dropped
  [[2, 3, 1, 4, 5], [4, 0, 3, 2, 1]],
  [[2, 1, 3, 2, 3, 2], [5, 3, 1, 0, 4, 2]],
  [[2, 2, 2, 2, 2, 2, 2, 2], [7, 6, 5, 4, 3, 2, 1, 0]], // 8 dims, none mergeable
  [[8, 12], [1, 0]], // 4x4 tiles: the innermost dim moves, both sizes multiples of 4
  [[4, 5, 8], [2, 1, 0]], // tiles with a middle dim between K and L
  [[3, 8, 4], [0, 2, 1]], // tiles under a batch dim
  [[2, 4, 3, 8], [3, 0, 2, 1]],
  [[4, 6, 8], [2, 0, 1]], // tiles after merging (4, 6) into one dim of 24
];

for (const [shape, perm] of PERMS) {
  Deno.test(`permute() matches reference and finite differences for ${shape} by [${perm}]`, async () => {
    await checkOp({
      inputs: [{ shape }],
      gpu: (x) => {
        const y = permute(x, perm);
        assert.deepEqual(y.shape, perm.map((k) => shape[k]));
        return y;
      },
      ref: permuteRef(shape, perm),
      fwd: EXACT,
      bwd: BWD,
    });
  });
}

Deno.test("permute() accepts negative dims", async () => {
  await checkOp({
    inputs: [{ shape: [3, 4, 5] }],
    gpu: (x) => permute(x, [-1, 0, -2]),
    ref: permuteRef([3, 4, 5], [2, 0, 1]),
    fwd: EXACT,
    bwd: BWD,
  });
});

Deno.test("permute() of a larger tensor (154k elements, 603 workgroups)", async () => {
  const shape = [300, 257, 2];
  await checkOp({
    inputs: [{ shape, data: Float64Array.from({ length: 300 * 257 * 2 }, (_, i) => i) }],
    gpu: (x) => permute(x, [2, 1, 0]),
    ref: permuteRef(shape, [2, 1, 0]),
    fwd: EXACT,
    noGrad: true,
  });
});

Deno.test("permute() copies u32 tensors bit for bit", async () => {
  const data = Uint32Array.from({ length: 2 * 3 * 4 }, (_, i) => 0xfffffff0 + i);
  const x = tensor(data, [2, 3, 4], { dtype: "u32" });
  const y = permute(x, [2, 0, 1]);
  assert.equal(y.dtype, "u32");
  const got = await y.toArray();
  assert.deepEqual(
    Array.from(got),
    Array.from(permuteRef([2, 3, 4], [2, 0, 1])(Float64Array.from(data))),
  );
  x.release();
  y.release();
});

for (
  const [shape, a, b] of [[[7, 13], -2, -1], [[2, 3, 17], -2, -1], [[2, 3, 17], 0, 2], [
    [1, 1],
    0,
    1,
  ], [[2, 3, 4, 8], 1, 2]] as const
) {
  Deno.test(`transpose() swaps dims ${a} and ${b} of ${shape}`, async () => {
    const nd = shape.length;
    const perm = shape.map((_, i) =>
      i === (a + nd) % nd ? (b + nd) % nd : i === (b + nd) % nd ? (a + nd) % nd : i
    );
    await checkOp({
      inputs: [{ shape: [...shape] }],
      gpu: (x) => transpose(x, a, b),
      ref: permuteRef([...shape], perm),
      fwd: EXACT,
      bwd: BWD,
    });
  });
}

Deno.test("transpose() defaults to the last two dims", async () => {
  await checkOp({
    inputs: [{ shape: [2, 3, 17] }],
    gpu: (x) => transpose(x),
    ref: permuteRef([2, 3, 17], [0, 2, 1]),
    fwd: EXACT,
    bwd: BWD,
  });
});

const RESHAPES: [number[], number[], number[]][] = [
  [[7, 13], [13, 7], [13, 7]],
  [[1, 1], [1], [1]],
  [[1, 1], [], []],
  [[33, 65], [5, -1], [5, 429]],
  [[2, 3, 17], [6, 17], [6, 17]],
  [[2, 3, 17], [-1], [102]],
  [[2, 3, 4], [4, 1, 3, 2], [4, 1, 3, 2]],
];

for (const [shape, target, expected] of RESHAPES) {
  Deno.test(`reshape() views ${shape} as [${target}] and passes the gradient back`, async () => {
    await checkOp({
      inputs: [{ shape }],
      gpu: (x) => {
        const y = reshape(x, target);
        assert.deepEqual(y.shape, expected);
        assert.equal(y.buffer, x.buffer, "reshape must share storage");
        return y;
      },
      ref: (x) => x.slice(),
      fwd: EXACT,
      bwd: BWD,
    });
  });
}

Deno.test("reshape() keeps the storage alive until both views are released", async () => {
  const x = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
  const y = reshape(x, [3, 2]);
  x.release();
  assert.deepEqual(Array.from(await y.toArray()), [1, 2, 3, 4, 5, 6]);
  y.release();
});

Deno.test("planPermute() merges contiguous runs and drops size-1 dims", () => {
  assert.deepEqual(planPermute([2, 3, 4, 5], [0, 2, 1, 3]), {
    shape: [2, 4, 3, 5],
    stride: [60, 5, 20, 1],
  });
  assert.deepEqual(planPermute([2, 3, 4, 5], [2, 3, 0, 1]), { shape: [20, 6], stride: [1, 20] });
  assert.deepEqual(planPermute([2, 1, 3], [1, 0, 2]), { shape: [6], stride: [1] });
  assert.deepEqual(planPermute([1, 1], [1, 0]), { shape: [], stride: [] });
});

Deno.test("reshape() rejects a different element count, naming the op and the shapes", () => {
  const x = tensor(new Float32Array(6), [2, 3]);
  throws(
    () => reshape(x, [4, 2]),
    (e: Error) =>
      e instanceof ShapeError &&
      e.message === "reshape: cannot reshape [2, 3] (6 elements) to [4, 2]",
  );
  throws(
    () => reshape(x, [-1, -1]),
    /reshape: cannot reshape \[2, 3\] \(6 elements\) to \[-1, -1\]/,
  );
  throws(() => reshape(x, [4, -1]), /reshape: cannot reshape \[2, 3\] \(6 elements\) to \[4, -1\]/);
  throws(() => reshape(x, [2.5, 2]), /reshape: cannot reshape/);
  x.release();
});

Deno.test("permute() / transpose() reject a bad permutation, naming the op and the shapes", () => {
  const x = tensor(new Float32Array(24), [2, 3, 4]);
  for (const perm of [[0, 0, 1], [0, 1], [0, 1, 2, 3], [0, 1, 3], [0, 1, 1.5]]) {
    throws(
      () => permute(x, perm),
      (e: Error) =>
        e instanceof ShapeError &&
        e.message ===
          `permute: [${perm.join(", ")}] is not a permutation of the 3 dims of [2, 3, 4]`,
    );
  }
  throws(() => transpose(x, 0, 3), /^ShapeError: transpose: dim 3 is out of range for \[2, 3, 4\]/);
  throws(() => transpose(x, -4, 0), /transpose: dim -4 is out of range for \[2, 3, 4\]/);
  x.release();
});

Deno.test("permute() rejects more dims than the kernel supports after merging", () => {
  const shape = new Array(9).fill(2);
  const x = tensor(new Float32Array(512), shape);
  throws(
    () => permute(x, [8, 7, 6, 5, 4, 3, 2, 1, 0]),
    /permute: \[8, 7, .*\] of \[2, 2, .*\] needs 9 dims after merging/,
  );
  x.release();
});

Deno.test("reshape() / permute() / transpose() reject a released tensor", () => {
  const x = tensor(new Float32Array(6), [2, 3]);
  x.release();
  for (
    const [name, f] of [["reshape", () => reshape(x, [6])], ["permute", () => permute(x, [1, 0])], [
      "transpose",
      () => transpose(x),
    ]] as const
  ) {
    throws(
      f,
      (e: Error) =>
        e instanceof TensorError && e.message.startsWith(`${name}: input 0`) &&
        e.message.includes("[2, 3]"),
    );
  }
});
