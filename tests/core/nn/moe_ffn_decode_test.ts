/**
 * moeFfnDecode / ffnDecode (the decode FFN, `gpu/kernels/moe_decode.ts`).
 *
 * - vs a float64 reference of the MoE FFN (routing in float64 too: scores,
 *   top-k with ties to the lower index, unselected experts masked), for
 *   every strategy (fused in 1 and 2 parts, two-pass), ReLU and GELU, on:
 *   the default model's FFN at N = 1 (C 128, d_ff 512, E 16; k 1, 4, 16),
 *   C = 13 (unaligned) with s = 12, s = 1, E = 1, N = 32, C = 3 (< 4).
 *   Router scores are planted 1.0 apart (far above f32 rounding) so both
 *   sides pick the same experts.
 * - exact ties: a zero router (scores ±0, folded together) and router rows
 *   in identical pairs: the lower expert of a tied pair is picked first.
 * - dense: ffnDecode and moeFfnDecode at k = E equal `linear → act →
 *   linear` from core/ops and the reference, for N across the token tiles
 *   (N 1, 3, 9: tiles of 1, 2 and 4 tokens, the last partial) and every
 *   strategy.
 * - moeFfnDecode equals moeFfn on the same inputs (k 2, 4; ReLU, GELU).
 * - identical results on repeated calls; (B, T, C) inputs; zero tokens.
 * - no live-buffer growth across 20 calls in a tidy scope; bad input.
 *
 * Tolerance (forward, f32 GPU vs float64 or vs other f32 paths):
 * |got − expected| ≤ 1e-4 + 1e-4·|expected|, outputs of size ~1-10
 * summing up to 512·C products.
 */
import assert from "node:assert/strict";
import {
  ffnDecode,
  MOE_DECODE_MAX_TOKENS,
  type MoeDecodeStrategy,
  moeFfnDecode,
} from "../../../core/nn/moe_ffn_decode.ts";
import { type MoeActivation, moeFfn, type MoeWeights } from "../../../core/nn/moe_ffn.ts";
import { ConfigError, ShapeError, TensorError } from "../../../core/errors.ts";
import { gelu, relu } from "../../../core/ops/activation.ts";
import { linear } from "../../../core/ops/matmul.ts";
import { Rng } from "../../../core/rng.ts";
import { tidy, tidyAsync } from "../../../core/scope.ts";
import { noGrad, tapeSize } from "../../../core/tape.ts";
import { readAll, type Tensor, tensor } from "../../../core/tensor.ts";
import { moeDecodeStrategy, moeDecodeTokenTile } from "../../../gpu/kernels/moe_decode.ts";
import {
  makeMoeData,
  type MoeCase,
  type MoeData,
  refMoe,
  refTopk,
  uploadMoe,
} from "./_moe_fixtures.ts";
import { assertAllClose, setupGpu, throwsLike } from "../../_helpers.ts";

const g = await setupGpu();
const TOL = { atol: 1e-4, rtol: 1e-4 };
const STRATEGIES: MoeDecodeStrategy[] = [
  { kind: "fused", parts: 1 },
  { kind: "fused", parts: 2 },
  { kind: "two-pass" },
];
const ACTS: MoeActivation[] = ["relu", "gelu"];

function name(s: MoeDecodeStrategy): string {
  return s.kind === "fused" ? `fused/${s.parts}` : s.kind;
}

// ---- vs the float64 reference ----------------------------------------------------

const CASES: [string, MoeCase, number[]][] = [
  ["default FFN, N 1", { N: 1, C: 128, E: 16, dff: 512, bias: true }, [1, 4, 16]],
  ["C 13, s 12", { N: 7, C: 13, E: 4, dff: 48, bias: false }, [1, 2, 4]],
  ["s 1", { N: 7, C: 12, E: 6, dff: 6, bias: true }, [1, 3, 6]],
  ["E 1", { N: 5, C: 10, E: 1, dff: 10, bias: true }, [1]],
  ["N 32", { N: 32, C: 32, E: 8, dff: 64, bias: true }, [2, 8]],
  ["C 3", { N: 2, C: 3, E: 2, dff: 4, bias: false }, [1, 2]],
];

for (const [what, c, ks] of CASES) {
  Deno.test(
    `moeFfnDecode() matches the float64 reference: ${what} (N ${c.N}, C ${c.C}, ` +
      `E ${c.E}, d_ff ${c.dff}, k ${ks}), every strategy`,
    async () => {
      const d = makeMoeData(c, c.N * 31 + c.C + c.E);
      await tidyAsync(async () => {
        const { h, w } = uploadMoe(d, c);
        for (const activation of ACTS) {
          const runs: [string, Tensor, Float64Array][] = [];
          for (const k of ks) {
            const expected = refMoe(d, c, k, activation);
            const auto = noGrad(() => moeFfnDecode(h, w, c.E, k, activation));
            runs.push([`auto, k ${k}`, auto, expected]);
            for (const strategy of STRATEGIES) {
              const out = noGrad(() => moeFfnDecode(h, w, c.E, k, activation, { strategy }));
              runs.push([`${name(strategy)}, k ${k}`, out, expected]);
            }
          }
          const got = await readAll(runs.map((r) => r[1]));
          runs.forEach(([label, , expected], i) =>
            assertAllClose(got[i], expected, TOL, `${activation}, ${label}`)
          );
        }
      });
    },
  );
}

Deno.test("moeFfnDecode() breaks exact score ties toward the lower expert index", async () => {
  const c: MoeCase = { N: 6, C: 32, E: 8, dff: 64, bias: true };
  const rng = new Rng(5);
  const d = makeMoeData(c, 17);
  // Zero router: every score is +0 or −0 (folded together), so top-k is experts 0..k−1.
  const zero: MoeData = { ...d, router: new Float32Array(c.E * c.C) };
  // Rows in identical pairs scaled 1, 1, 2, 2, 3, 3, 4, 4 (pairs tie exactly): with r·h = ±1
  // the best pair is (6, 7) or (0, 1), and the lower expert of each pair ranks first.
  const r = rng.normalArray(c.C, 1);
  const rr = r.reduce((a, v) => a + v * v, 0);
  const paired = new Float32Array(c.E * c.C);
  for (let e = 0; e < c.E; e++) {
    for (let j = 0; j < c.C; j++) paired[e * c.C + j] = (1 + Math.floor(e / 2)) * r[j];
  }
  const h = new Float32Array(c.N * c.C);
  for (let t = 0; t < c.N; t++) {
    const sign = t % 2 === 0 ? 1 : -1;
    for (let j = 0; j < c.C; j++) h[t * c.C + j] = sign * r[j] / rr;
  }
  const pairedData: MoeData = { ...d, router: paired, h };
  assert.deepEqual(refTopk(pairedData, c, 3).slice(0, 2), [[6, 7, 4], [0, 1, 2]]);
  assert.deepEqual(refTopk(zero, c, 3)[0], [0, 1, 2]);
  for (const data of [zero, pairedData]) {
    await tidyAsync(async () => {
      const { h, w } = uploadMoe(data, c);
      for (const k of [1, 3, 5]) {
        const outs = STRATEGIES.map((strategy) =>
          noGrad(() => moeFfnDecode(h, w, c.E, k, "relu", { strategy }))
        );
        const got = await readAll(outs);
        const expected = refMoe(data, c, k, "relu");
        got.forEach((o, i) => assertAllClose(o, expected, TOL, `${name(STRATEGIES[i])}, k ${k}`));
      }
    });
  }
});

// ---- dense -------------------------------------------------------------------------

for (const activation of ACTS) {
  Deno.test(
    `ffnDecode() and moeFfnDecode() at k = E equal linear → ${activation} → linear ` +
      `(N, C: 1, 12; 3, 13; 9, 12; 9, 13)`,
    async () => {
      const act = activation === "relu" ? relu : gelu;
      // Token tiles of 1, 2 and 4 (the last partial), aligned and unaligned C.
      for (const [N, C] of [[1, 12], [3, 13], [9, 12], [9, 13]]) {
        const c: MoeCase = { N, C, E: 4, dff: 64, bias: (N + C) % 2 === 0 };
        const d = makeMoeData(c, N * 7 + C);
        const expected = refMoe(d, c, c.E, activation);
        await tidyAsync(async () => {
          const { h, w } = uploadMoe(d, c);
          const dense = noGrad(() => linear(act(linear(h, w.fcW, w.fcB)), w.projW, w.projB));
          const outs = [
            noGrad(() => ffnDecode(h, w, activation)),
            ...STRATEGIES.map((strategy) =>
              noGrad(() => ffnDecode(h, w, activation, { strategy }))
            ),
            noGrad(() => moeFfnDecode(h, w, c.E, c.E, activation)),
          ];
          const labels = ["ffnDecode auto", ...STRATEGIES.map(name), "moeFfnDecode k = E"];
          const [denseOut, ...got] = await readAll([dense, ...outs]);
          const what = `N ${N}, C ${C} (token tile ${moeDecodeTokenTile(N, false)})`;
          assertAllClose(denseOut, expected, TOL, `core ops vs reference, ${what}`);
          got.forEach((o, i) => {
            assertAllClose(o, denseOut, TOL, `${labels[i]} vs core ops, ${what}`);
            assertAllClose(o, expected, TOL, `${labels[i]} vs reference, ${what}`);
          });
        });
      }
    },
  );
}

// ---- vs moeFfn ---------------------------------------------------------------------

Deno.test("moeFfnDecode() equals moeFfn on the same inputs (k 2, 4; relu, gelu)", async () => {
  const c: MoeCase = { N: 7, C: 32, E: 8, dff: 64, bias: true };
  const d = makeMoeData(c, 23);
  await tidyAsync(async () => {
    const { h, w } = uploadMoe(d, c);
    for (const activation of ACTS) {
      for (const k of [2, 4]) {
        const [a, b] = await readAll([
          noGrad(() => moeFfnDecode(h, w, c.E, k, activation)),
          noGrad(() => moeFfn(h, w, c.E, k, activation)),
        ]);
        assertAllClose(a, b, TOL, `${activation}, k ${k}`);
      }
    }
  });
});

// ---- shapes, determinism, memory ---------------------------------------------------

Deno.test("moeFfnDecode() gives identical bits on repeated calls, keeps (B, T, C)", async () => {
  const c: MoeCase = { N: 2 * 3, C: 16, E: 4, dff: 32, bias: true };
  const d = makeMoeData(c, 3);
  await tidyAsync(async () => {
    const { w } = uploadMoe(d, c);
    const h = tensor(d.h, [2, 3, 16]);
    const a = noGrad(() => moeFfnDecode(h, w, 4, 2));
    const b = noGrad(() => moeFfnDecode(h, w, 4, 2));
    const dense = noGrad(() => ffnDecode(h, w));
    assert.deepEqual(a.shape, [2, 3, 16]);
    assert.deepEqual(dense.shape, [2, 3, 16]);
    const [av, bv, dv] = await readAll([a, b, dense]);
    assert.deepEqual(av, bv);
    assertAllClose(av, refMoe(d, c, 2, "relu"), TOL);
    assertAllClose(dv, refMoe(d, c, 4, "relu"), TOL);
  });
});

Deno.test("moeFfnDecode() and ffnDecode() of zero tokens are empty tensors", async () => {
  await tidyAsync(async () => {
    const c: MoeCase = { N: 2, C: 8, E: 2, dff: 8, bias: true };
    const { w } = uploadMoe(makeMoeData(c, 2), c);
    const h = tensor(new Float32Array(0), [0, 8]);
    const outs = [noGrad(() => moeFfnDecode(h, w, 2, 1)), noGrad(() => ffnDecode(h, w))];
    for (const o of outs) {
      assert.deepEqual(o.shape, [0, 8]);
      assert.equal((await o.toArray()).length, 0);
    }
  });
});

Deno.test("moeFfnDecode() leaks no buffers across 20 calls in a tidy scope", async () => {
  const c: MoeCase = { N: 3, C: 16, E: 4, dff: 32, bias: true };
  const { h, w } = uploadMoe(makeMoeData(c, 9), c);
  for (const strategy of STRATEGIES) {
    // The scope's result would outlive it: each call returns nothing.
    const call = () =>
      tidy(() => {
        noGrad(() => moeFfnDecode(h, w, 4, 2, "relu", { strategy }));
        noGrad(() => ffnDecode(h, w, "relu", { strategy }));
      });
    call(); // warm-up
    await g.recorder.sync();
    const before = g.pool.stats().liveBuffers;
    for (let i = 0; i < 20; i++) call();
    await g.recorder.sync();
    assert.equal(g.pool.stats().liveBuffers, before, `${name(strategy)}: live buffers grew`);
  }
  assert.equal(tapeSize(), 0);
  for (const t of [h, w.fcW, w.fcB!, w.projW, w.projB!, w.router]) t.release();
});

Deno.test("moeDecodeStrategy() fuses where the activations fit workgroup memory", () => {
  const fused = { kind: "fused", parts: 1 };
  const sz = { N: 1, C: 128, dff: 512, E: 16, k: 4 };
  assert.deepEqual(moeDecodeStrategy(sz, true, 32768), fused);
  // Dense, 4-token tiles: 128 units × 4 tokens × 16 B = 8 KiB.
  assert.deepEqual(moeDecodeStrategy({ ...sz, N: 8, E: 1, k: 1 }, false, 8192), fused);
  assert.deepEqual(moeDecodeStrategy({ ...sz, N: 8, E: 1, k: 1 }, false, 8191), {
    kind: "two-pass",
  });
  assert.deepEqual(moeDecodeStrategy({ ...sz, dff: 16384, E: 1, k: 1 }, false, 32768), {
    kind: "two-pass",
  });
  assert.equal(moeDecodeTokenTile(3, false), 2);
  assert.equal(moeDecodeTokenTile(32, false), 4);
  assert.equal(moeDecodeTokenTile(32, true), 1);
});

// ---- bad input ---------------------------------------------------------------------

Deno.test("moeFfnDecode() and ffnDecode() reject bad shapes, sizes and gradients", () => {
  tidy(() => {
    const c: MoeCase = { N: 3, C: 8, E: 4, dff: 16, bias: true };
    const { h, w } = uploadMoe(makeMoeData(c, 1), c);
    const run = (ww: MoeWeights, E: number, k: number, x = h) =>
      noGrad(() => moeFfnDecode(x, ww, E, k));
    throwsLike(() => run(w, 3, 1), ConfigError, /moeFfnDecode: 3 experts do not divide d_ff 16/);
    throwsLike(() => run(w, 4, 0), ConfigError, /moeFfnDecode: top-k 0 .*4 experts/);
    throwsLike(() => run(w, 4, 5), ConfigError, /top-k 5 .*1 <= k <= 4/);
    throwsLike(() => run(w, 4, 1.5), ConfigError, /top-k 1.5/);
    const badRouter = { ...w, router: tensor(new Float32Array(2 * 8), [2, 8]) };
    throwsLike(() => run(badRouter, 4, 1), ShapeError, /router \[2, 8\] must be \[4, 8\]/);
    const wideRouter = { ...w, router: tensor(new Float32Array(4 * 9), [4, 9]) };
    throwsLike(() => run(wideRouter, 4, 1), ShapeError, /router \[4, 9\] must be \[4, 8\]/);
    const badProj = { ...w, projW: tensor(new Float32Array(16 * 8), [16, 8]) };
    throwsLike(() => run(badProj, 4, 1), ShapeError, /c_proj weight \[16, 8\] must be \[8, 16\]/);
    throwsLike(
      () => noGrad(() => ffnDecode(h, badProj)),
      ShapeError,
      /ffnDecode: c_proj weight \[16, 8\]/,
    );
    const badFc = { ...w, fcW: tensor(new Float32Array(16 * 8), [2, 8, 8]) };
    throwsLike(() => run(badFc, 4, 1), ShapeError, /c_fc weight \[2, 8, 8\] must be \[d_ff, C\]/);
    const badBias = { ...w, fcB: tensor(new Float32Array(8), [8]) };
    throwsLike(() => run(badBias, 4, 1), ShapeError, /c_fc bias \[8\] must be \[16\]/);
    const badOutBias = { ...w, projB: tensor(new Float32Array(16), [16]) };
    throwsLike(() => run(badOutBias, 4, 1), ShapeError, /c_proj bias \[16\] must be \[8\]/);
    const x7 = tensor(new Float32Array(3 * 7), [3, 7]);
    throwsLike(() => run(w, 4, 1, x7), ShapeError, /moeFfnDecode: input \[3, 7\] does not match/);
    throwsLike(() => noGrad(() => ffnDecode(x7, w)), ShapeError, /ffnDecode: input \[3, 7\]/);
    const flat = tensor(new Float32Array(8), [8]);
    throwsLike(() => run(w, 4, 1, flat), ShapeError, /input \[8\] does not match/);
    const ids = tensor(new Uint32Array(3 * 8), [3, 8], { dtype: "u32" });
    throwsLike(() => run(w, 4, 1, ids), ShapeError, /must be f32, got u32/);
    // One token past the limit, on a 1-wide model (cheap to allocate).
    const wide = {
      fcW: tensor(new Float32Array(4), [4, 1]),
      fcB: null,
      projW: tensor(new Float32Array(4), [1, 4]),
      projB: null,
    };
    const many = tensor(new Float32Array(MOE_DECODE_MAX_TOKENS + 1), [
      MOE_DECODE_MAX_TOKENS + 1,
      1,
    ]);
    throwsLike(() => noGrad(() => ffnDecode(many, wide)), ShapeError, /over the decode limit/);
    throwsLike(
      () => noGrad(() => moeFfnDecode(h, w, 4, 1, "tanh" as MoeActivation)),
      ConfigError,
      /unknown activation tanh/,
    );
    // Grad mode on and a weight that requires a gradient: no silent graph cut.
    w.fcW.requiresGrad = true;
    throwsLike(
      () => moeFfnDecode(h, w, 4, 1),
      TensorError,
      /moeFfnDecode: c_fc.weight \[16, 8\] requires a gradient.*noGrad/,
    );
    throwsLike(() => ffnDecode(h, w), TensorError, /ffnDecode: .*requires a gradient/);
    w.fcW.requiresGrad = false;
    w.router.release();
    throwsLike(() => run(w, 4, 1), TensorError, /moeFfnDecode: input 3 .*after release/);
  });
});
