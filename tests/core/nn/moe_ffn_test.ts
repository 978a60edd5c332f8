/**
 * moeFfn (the MoE FFN inference path) and moeRoute (its routing plan).
 *
 * - k = E: equals the dense FFN run through the dense ops (linear → act →
 *   linear) and a float64 reference, for N in {1, 7, 33}, C in {12, 32} (and
 *   13, the unaligned path), E in {1, 4, 16}, d_ff = 16·E.
 * - k < E: equals a float64 reference that routes in float64 too (scores,
 *   top-k with ties to the lower index) and masks the unselected experts'
 *   activations. Inputs are built so that each token's scores are planted
 *   1.0 apart (far above f32 rounding), so both sides pick the same experts.
 * - GELU as well as ReLU; both operand designs ("texture", "buffer").
 * - The plan's counts, offsets, rows and pos against a host counting sort,
 *   on a small case and on one spanning several plan chunks.
 * - No live-buffer growth across repeated calls in a tidy scope; bad input.
 *
 * Tolerance (forward, f32 GPU vs float64 or vs the dense f32 path):
 * |got − expected| ≤ 1e-4 + 1e-4·|expected|, outputs of size ~1-10 summing
 * up to 256·C products (measured max error ~2e-6).
 */
import assert from "node:assert/strict";
import {
  MOE_EMPTY_ROW,
  MOE_ROW_TILE,
  type MoeActivation,
  type MoeDesign,
  moeFfn,
  moeFfnFlops,
  moeRoute,
  type MoeWeights,
  releaseRouting,
} from "../../../core/nn/moe_ffn.ts";
import { ConfigError, ShapeError, TensorError } from "../../../core/errors.ts";
import { gelu, relu } from "../../../core/ops/activation.ts";
import { linear } from "../../../core/ops/matmul.ts";
import { tidy, tidyAsync } from "../../../core/scope.ts";
import { noGrad, tapeSize } from "../../../core/tape.ts";
import { readAll, tensor } from "../../../core/tensor.ts";
import { MOE_PLAN_CHUNK } from "../../../gpu/kernels/moe_plan.ts";
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
const DESIGNS: MoeDesign[] = ["texture", "buffer"];

// ---- k = E: the dense FFN ------------------------------------------------------

for (const E of [1, 4, 16]) {
  Deno.test(`moeFfn() with k = E = ${E} equals the dense FFN (N 1, 7, 33; C 12, 13, 32)`, async () => {
    for (const N of [1, 7, 33]) {
      for (const C of [12, 13, 32]) {
        const c: MoeCase = { N, C, E, dff: 16 * E, bias: (N + C) % 2 === 0 };
        const d = makeMoeData(c, N * 100 + C + E);
        const expected = refMoe(d, c, E, "relu");
        await tidyAsync(async () => {
          const { h, w } = uploadMoe(d, c);
          const dense = noGrad(() => linear(relu(linear(h, w.fcW, w.fcB)), w.projW, w.projB));
          const outs = DESIGNS.map((design) =>
            noGrad(() => moeFfn(h, w, E, E, "relu", { design }))
          );
          const [denseOut, ...got] = await readAll([dense, ...outs]);
          const what = `N ${N}, C ${C}, E ${E}`;
          assertAllClose(denseOut, expected, TOL, `dense ${what}`);
          got.forEach((o, i) => {
            assertAllClose(o, denseOut, TOL, `${DESIGNS[i]} vs dense, ${what}`);
            assertAllClose(o, expected, TOL, `${DESIGNS[i]} vs reference, ${what}`);
          });
        });
      }
    }
  });
}

// ---- k < E: masked reference ------------------------------------------------------

const SPARSE: [MoeCase, number[]][] = [
  [{ N: 1, C: 32, E: 4, dff: 64, bias: true }, [1, 2]],
  [{ N: 7, C: 12, E: 4, dff: 64, bias: false }, [1, 2, 3]],
  [{ N: 33, C: 32, E: 4, dff: 64, bias: true }, [1, 2]],
  [{ N: 7, C: 32, E: 16, dff: 256, bias: true }, [1, 2]],
  [{ N: 33, C: 32, E: 16, dff: 256, bias: false }, [1, 2, 5]],
  [{ N: 33, C: 17, E: 16, dff: 256, bias: true }, [2]], // C < E: random scores, C unaligned
  [{ N: 300, C: 32, E: 8, dff: 96, bias: true }, [2]], // several plan chunks; s = 12
];

for (const [c, ks] of SPARSE) {
  for (const activation of ["relu", "gelu"] as const) {
    Deno.test(
      `moeFfn() with k = ${ks} of E ${c.E} matches the masked reference ` +
        `(N ${c.N}, C ${c.C}, d_ff ${c.dff}, ${activation})`,
      async () => {
        const d = makeMoeData(c, c.N + 7 * c.C + c.E);
        if (c.C < c.E) assertDistinctTopk(d, c, ks);
        await tidyAsync(async () => {
          const { h, w } = uploadMoe(d, c);
          for (const k of ks) {
            const expected = refMoe(d, c, k, activation);
            const outs = DESIGNS.map((design) =>
              noGrad(() => moeFfn(h, w, c.E, k, activation, { design }))
            );
            const got = await readAll(outs);
            got.forEach((o, i) => assertAllClose(o, expected, TOL, `${DESIGNS[i]}, k ${k}`));
          }
        });
      },
    );
  }
}

/** Random (unplanted) scores: checks the k-th and (k+1)-th are far apart, so f32 routing agrees. */
function assertDistinctTopk(d: MoeData, c: MoeCase, ks: number[]): void {
  const { N, C, E } = c;
  for (let t = 0; t < N; t++) {
    const s = Array.from({ length: E }, (_, e) => {
      let v = 0;
      for (let j = 0; j < C; j++) v += d.router[e * C + j] * d.h[t * C + j];
      return v;
    }).sort((a, b) => b - a);
    for (const k of ks) assert.ok(s[k - 1] - s[k] > 1e-3, `near-tie in test data at token ${t}`);
  }
}

Deno.test("moeFfn() keeps (B, T, C) inputs' shape and matches the reference", async () => {
  const c: MoeCase = { N: 2 * 5, C: 32, E: 4, dff: 64, bias: true };
  const d = makeMoeData(c, 5);
  const expected = refMoe(d, c, 2, "relu");
  await tidyAsync(async () => {
    const { w } = uploadMoe(d, c);
    const h = tensor(d.h, [2, 5, 32]);
    const out = noGrad(() => moeFfn(h, w, 4, 2));
    assert.deepEqual(out.shape, [2, 5, 32]);
    assertAllClose((await readAll([out]))[0], expected, TOL);
  });
});

// ---- the routing plan ----------------------------------------------------------------

/** Checks a plan against a host counting sort of the GPU's own top-k output. */
async function checkPlan(c: MoeCase, k: number, seed: number): Promise<void> {
  const d = makeMoeData(c, seed);
  const { N, E } = c;
  await tidyAsync(async () => {
    const { h, w } = uploadMoe(d, c);
    const r = moeRoute(h, w.router, k);
    const [experts, counts, offsets, rows, pos] = await readAll([
      r.experts,
      r.counts,
      r.offsets,
      r.rows,
      r.pos,
    ]);
    const nk = N * k;
    assert.equal(r.pmax, Math.ceil((nk + E * (MOE_ROW_TILE - 1)) / MOE_ROW_TILE) * MOE_ROW_TILE);
    assert.equal(rows.length, r.pmax);
    assert.deepEqual(Array.from(experts), refTopk(d, c, k).flat(), "top-k experts");
    const byExpert: number[][] = Array.from({ length: E }, () => []);
    for (let i = 0; i < nk; i++) byExpert[experts[i]].push(i);
    let o = 0;
    for (let e = 0; e < E; e++) {
      assert.equal(counts[e], byExpert[e].length, `count of expert ${e}`);
      assert.equal(offsets[e], o, `offset of expert ${e}`);
      const seg = Array.from(rows.slice(o, o + counts[e]));
      assert.deepEqual(seg, byExpert[e], `rows of expert ${e} (ascending selection id)`);
      o += Math.ceil(byExpert[e].length / MOE_ROW_TILE) * MOE_ROW_TILE;
      for (let p = offsets[e] + counts[e]; p < o; p++) assert.equal(rows[p], MOE_EMPTY_ROW);
    }
    assert.equal(offsets[E], o, "offsets[E]");
    for (let p = o; p < r.pmax; p++) assert.equal(rows[p], MOE_EMPTY_ROW, `tail row ${p}`);
    for (let i = 0; i < nk; i++) assert.equal(rows[pos[i]], i, `pos[${i}] inverts rows`);
    releaseRouting(r);
  });
}

Deno.test("moeRoute() groups selections by expert: counts, offsets, rows, pos (small)", async () => {
  await checkPlan({ N: 7, C: 12, E: 4, dff: 16, bias: false }, 2, 3);
  await checkPlan({ N: 1, C: 12, E: 4, dff: 16, bias: false }, 1, 4);
});

Deno.test("moeRoute() plan over several chunks and an expert with no tokens", async () => {
  // E = 16 > C: random scores; N·k = 2·MOE_PLAN_CHUNK + 10 spans three chunks.
  const N = MOE_PLAN_CHUNK + 5;
  await checkPlan({ N, C: 32, E: 16, dff: 64, bias: false }, 2, 11);
  // One token, E = 8, k = 1: seven experts are empty.
  await checkPlan({ N: 1, C: 32, E: 8, dff: 64, bias: false }, 1, 12);
});

// ---- memory, tape and FLOPs ------------------------------------------------------------

Deno.test("moeFfn() leaks no buffers across repeated calls in a tidy scope", async () => {
  const c: MoeCase = { N: 33, C: 32, E: 4, dff: 64, bias: true };
  const d = makeMoeData(c, 9);
  const { h, w } = uploadMoe(d, c);
  for (const design of DESIGNS) {
    // The scope's result would outlive it: each call returns nothing.
    const call = () => tidy(() => void noGrad(() => moeFfn(h, w, 4, 2, "relu", { design })));
    call(); // warm-up
    await g.recorder.sync();
    const before = g.pool.stats().liveBuffers;
    for (let i = 0; i < 3; i++) call();
    await g.recorder.sync();
    assert.equal(g.pool.stats().liveBuffers, before, `${design}: live buffers grew`);
  }
  assert.equal(tapeSize(), 0);
  for (const t of [h, w.fcW, w.fcB!, w.projW, w.projB!, w.router]) t.release();
});

Deno.test("moeFfnFlops() counts the router and k/E of the dense FFN", () => {
  const [N, C, dff, E] = [512, 128, 512, 16];
  assert.equal(moeFfnFlops(N, C, dff, E, E) - 2 * N * C * E, 4 * N * C * dff);
  assert.equal(moeFfnFlops(N, C, dff, E, 4), 2 * N * C * E + 4 * N * C * dff / 4);
});

// ---- bad input ----------------------------------------------------------------------------

Deno.test("moeFfn() rejects bad sizes, a router of the wrong shape, and gradients", () => {
  tidy(() => {
    const c: MoeCase = { N: 3, C: 8, E: 4, dff: 16, bias: true };
    const { h, w } = uploadMoe(makeMoeData(c, 1), c);
    const run = (ww: MoeWeights, E: number, k: number, x = h) => noGrad(() => moeFfn(x, ww, E, k));
    throwsLike(() => run(w, 3, 1), ConfigError, /moeFfn: 3 experts do not divide d_ff 16/);
    throwsLike(() => run(w, 4, 0), ConfigError, /moeFfn: top-k 0 .*4 experts/);
    throwsLike(() => run(w, 4, 5), ConfigError, /moeFfn: top-k 5 .*1 <= k <= 4/);
    throwsLike(() => run(w, 4, 1.5), ConfigError, /top-k 1.5/);
    const badRouter = { ...w, router: tensor(new Float32Array(2 * 8), [2, 8]) };
    throwsLike(() => run(badRouter, 4, 1), ShapeError, /moeFfn: router \[2, 8\] must be \[4, 8\]/);
    const wideRouter = { ...w, router: tensor(new Float32Array(4 * 9), [4, 9]) };
    throwsLike(() => run(wideRouter, 4, 1), ShapeError, /router \[4, 9\] must be \[4, 8\]/);
    const badProj = { ...w, projW: tensor(new Float32Array(16 * 8), [16, 8]) };
    throwsLike(() => run(badProj, 4, 1), ShapeError, /c_proj weight \[16, 8\] must be \[8, 16\]/);
    const badBias = { ...w, fcB: tensor(new Float32Array(8), [8]) };
    throwsLike(() => run(badBias, 4, 1), ShapeError, /c_fc bias \[8\] must be \[16\]/);
    const x7 = tensor(new Float32Array(3 * 7), [3, 7]);
    throwsLike(() => run(w, 4, 1, x7), ShapeError, /moeFfn: input \[3, 7\] does not match/);
    throwsLike(
      () => noGrad(() => moeFfn(h, w, 4, 1, "tanh" as MoeActivation)),
      ConfigError,
      /unknown activation tanh/,
    );
    throwsLike(() => moeRoute(h, w.router, 0), ConfigError, /moeRoute: top-k 0/);
    // Grad mode on and a weight that requires a gradient: no silent graph cut.
    w.fcW.requiresGrad = true;
    throwsLike(() => moeFfn(h, w, 4, 1), TensorError, /moeFfn: .*requires a gradient.*noGrad/);
    w.fcW.requiresGrad = false;
    w.router.release();
    throwsLike(() => run(w, 4, 1), TensorError, /moeFfn: input 3 .*after release/);
  });
});

Deno.test("moeFfn() of zero tokens is an empty tensor", async () => {
  await tidyAsync(async () => {
    const c: MoeCase = { N: 2, C: 8, E: 2, dff: 8, bias: true };
    const { w } = uploadMoe(makeMoeData(c, 2), c);
    const out = noGrad(() => moeFfn(tensor(new Float32Array(0), [0, 8]), w, 2, 1));
    assert.deepEqual(out.shape, [0, 8]);
    assert.equal((await out.toArray()).length, 0);
  });
});

Deno.test("gelu reference agrees with the dense gelu op (sanity of the test's reference)", async () => {
  const c: MoeCase = { N: 7, C: 12, E: 4, dff: 64, bias: true };
  const d = makeMoeData(c, 21);
  await tidyAsync(async () => {
    const { h, w } = uploadMoe(d, c);
    const dense = noGrad(() => linear(gelu(linear(h, w.fcW, w.fcB)), w.projW, w.projB));
    assertAllClose((await readAll([dense]))[0], refMoe(d, c, 4, "gelu"), TOL);
  });
});
