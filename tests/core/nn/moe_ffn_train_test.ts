/**
 * moeFfnTrain (the sparse MoE FFN's training forward and backward).
 *
 * - k = E: output and the gradients of h, c_fc.weight/bias,
 *   c_proj.weight/bias equal the dense FFN run through the tape (linear →
 *   act → linear) with routerInputGrad off (the straight-through router
 *   term in dh is the one thing the dense model lacks), N 1, 7, 33; C 12,
 *   16; E 1, 4 (s = 24, 6: unaligned expert widths); ReLU and GELU.
 * - k < E: every gradient, router and the router term of dh included,
 *   matches a float64 reference that routes in float64 and masks the
 *   unselected experts; router scores are planted 1.0 apart (no near-ties)
 *   and one expert always gets the lowest score, so it receives no token:
 *   its slices of dW1, db1, dW2 and its router row must be exactly 0.
 *   Run with each tile design of the weight-gradient outer products
 *   (`MOE_OUTER_DESIGNS`), with cases of several tiles per expert.
 * - The router gradient is straight-through (forward weight 1, gradient of
 *   the softmax-weighted virtual output): finite differences of the real
 *   forward would give 0 for it (the forward is piecewise constant in the
 *   router weights), so it is checked only against the float64 reference
 *   of the formula. h's gradient is checked by central finite differences
 *   of the float64 forward at k = E (where the forward is smooth in h).
 * - Bitwise determinism of two runs; no live-buffer growth across steps in
 *   tidy scopes; bad input.
 *
 * Tolerance: |got − expected| ≤ 2e-4 + 2e-4·|expected| (f32 sums of up to
 * N·k products of values ~1-10; measured max error below 1e-5 for the
 * dense comparisons). Finite differences: eps 1e-3 in float64, same
 * tolerance as above at 1e-3.
 */
import assert from "node:assert/strict";
import { type MoeActivation, type MoeWeights } from "../../../core/nn/moe_ffn.ts";
import { moeFfnTrain } from "../../../core/nn/moe_ffn_train.ts";
import { ConfigError, ShapeError, TensorError } from "../../../core/errors.ts";
import { gelu, relu } from "../../../core/ops/activation.ts";
import { linear } from "../../../core/ops/matmul.ts";
import { tidy, tidyAsync } from "../../../core/scope.ts";
import { backward } from "../../../core/tape.ts";
import { readAll, type Tensor, tensor } from "../../../core/tensor.ts";
import { MOE_OUTER_DESIGNS, type MoeOuterDesign } from "../../../gpu/kernels/moe_backward.ts";
import { makeMoeData, type MoeCase, type MoeData, refAct, refDact } from "./_moe_fixtures.ts";
import { assertAllClose, setupGpu } from "../../_helpers.ts";

const g = await setupGpu();
const TOL = { atol: 2e-4, rtol: 2e-4 };

interface Ref {
  out: Float64Array;
  dh: Float64Array;
  fcW: Float64Array;
  fcB: Float64Array;
  projW: Float64Array;
  projB: Float64Array;
  router: Float64Array;
  chosen: Set<number>;
}

/**
 * The masked MoE FFN and its gradients in float64, routed in float64 (top-k,
 * ties to the lower index), with the straight-through router gradient of the
 * module doc; `h` overrides d.h (finite differences).
 */
function reference(
  d: MoeData,
  c: MoeCase,
  k: number,
  a: MoeActivation,
  h: Float64Array = Float64Array.from(d.h),
): Ref {
  const { N, C, E, dff } = c;
  const s = dff / E;
  const r: Ref = {
    out: new Float64Array(N * C),
    dh: new Float64Array(N * C),
    fcW: new Float64Array(dff * C),
    fcB: new Float64Array(dff),
    projW: new Float64Array(C * dff),
    projB: new Float64Array(C),
    router: new Float64Array(E * C),
    chosen: new Set(),
  };
  for (let t = 0; t < N; t++) {
    const ht = h.subarray(t * C, (t + 1) * C);
    const G = d.G.subarray(t * C, (t + 1) * C);
    const sc = Array.from({ length: E }, (_, e) => {
      let v = 0;
      for (let j = 0; j < C; j++) v += d.router[e * C + j] * ht[j];
      return v;
    });
    const sel = Array.from({ length: E }, (_, e) => e).sort((x, y) => sc[y] - sc[x] || x - y)
      .slice(0, k);
    const gdot: number[] = [];
    for (const e of sel) {
      r.chosen.add(e);
      const y = new Float64Array(C);
      for (let n = e * s; n < (e + 1) * s; n++) {
        let pre = d.fcB ? d.fcB[n] : 0;
        for (let j = 0; j < C; j++) pre += d.fcW[n * C + j] * ht[j];
        const av = refAct(a, pre);
        let dAct = 0;
        for (let j = 0; j < C; j++) {
          y[j] += av * d.projW[j * dff + n];
          r.projW[j * dff + n] += G[j] * av;
          dAct += G[j] * d.projW[j * dff + n];
        }
        const dPre = dAct * refDact(a, pre);
        r.fcB[n] += dPre;
        for (let j = 0; j < C; j++) {
          r.fcW[n * C + j] += dPre * ht[j];
          r.dh[t * C + j] += dPre * d.fcW[n * C + j];
        }
      }
      let gd = 0;
      for (let j = 0; j < C; j++) {
        r.out[t * C + j] += y[j];
        gd += G[j] * y[j];
      }
      gdot.push(gd);
    }
    const m = Math.max(...sel.map((e) => sc[e]));
    const w = sel.map((e) => Math.exp(sc[e] - m));
    const z = w.reduce((x, y) => x + y, 0);
    const p = w.map((x) => x / z);
    const gbar = p.reduce((acc, pj, j) => acc + pj * gdot[j], 0);
    sel.forEach((e, j) => {
      const dS = p[j] * (gdot[j] - gbar);
      for (let q = 0; q < C; q++) {
        r.router[e * C + q] += dS * ht[q];
        r.dh[t * C + q] += dS * d.router[e * C + q];
      }
    });
    for (let j = 0; j < C; j++) {
      if (d.projB) r.out[t * C + j] += d.projB[j];
      r.projB[j] += G[j];
    }
  }
  return r;
}

interface Params {
  h: Tensor;
  w: MoeWeights;
  G: Tensor;
}

function upload(d: MoeData, c: MoeCase): Params {
  const { N, C, E, dff } = c;
  const p = (data: Float32Array, shape: number[], name: string) =>
    tensor(data, shape, { requiresGrad: true, name });
  return {
    h: p(d.h, [N, C], "h"),
    w: {
      fcW: p(d.fcW, [dff, C], "c_fc.weight"),
      fcB: d.fcB ? p(d.fcB, [dff], "c_fc.bias") : null,
      projW: p(d.projW, [C, dff], "c_proj.weight"),
      projB: d.projB ? p(d.projB, [C], "c_proj.bias") : null,
      router: p(d.router, [E, C], "router.weight"),
    },
    G: tensor(d.G, [N, C]),
  };
}

const NAMES = ["out", "h", "fcW", "fcB", "projW", "projB", "router"] as const;
type Got = Record<(typeof NAMES)[number], Float32Array | null>;

/** Runs forward + backward (seed G) and reads the output and every gradient at once. */
async function run(
  P: Params,
  fwd: (p: Params) => Tensor,
): Promise<Got> {
  return await tidyAsync(async () => {
    for (const t of [P.h, P.w.fcW, P.w.fcB, P.w.projW, P.w.projB, P.w.router]) {
      if (t) t.grad = null;
    }
    const out = fwd(P);
    const outCopy = out.view(out.shape);
    backward(out, P.G);
    const ts: (Tensor | null)[] = [
      outCopy,
      P.h.grad,
      P.w.fcW.grad,
      P.w.fcB?.grad ?? null,
      P.w.projW.grad,
      P.w.projB?.grad ?? null,
      P.w.router.grad,
    ];
    const live = ts.filter((t): t is Tensor => t !== null);
    const data = await readAll(live);
    const got = {} as Got;
    let i = 0;
    NAMES.forEach((n, j) => {
      got[n] = ts[j] ? data[i++] as Float32Array : null;
    });
    for (const t of live.slice(1)) t.release();
    return got;
  });
}

function releaseParams(P: Params): void {
  for (const t of [P.h, P.w.fcW, P.w.fcB, P.w.projW, P.w.projB, P.w.router, P.G]) t?.release();
}

const dense = (a: MoeActivation) => (p: Params) =>
  linear(
    (a === "relu" ? relu : gelu)(linear(p.h, p.w.fcW, p.w.fcB)),
    p.w.projW,
    p.w.projB,
  );

// ---- k = E: the dense FFN ---------------------------------------------------------

for (const a of ["relu", "gelu"] as MoeActivation[]) {
  Deno.test(`moeFfnTrain() with k = E equals the dense FFN and its gradients (${a})`, async () => {
    for (const E of [1, 4]) {
      for (const C of [12, 16]) {
        for (const N of [1, 7, 33]) {
          const c: MoeCase = { N, C, E, dff: 24, bias: N !== 7 };
          const P = upload(makeMoeData(c, 100 * N + C + E), c);
          const want = await run(P, dense(a));
          const got = await run(
            P,
            (p) => moeFfnTrain(p.h, p.w, E, E, a, { routerInputGrad: false }),
          );
          for (const n of NAMES) {
            if (n === "router") continue;
            assert.equal(got[n] === null, want[n] === null, `${n} presence`);
            if (got[n]) assertAllClose(got[n]!, want[n]!, TOL, `N ${N} C ${C} E ${E}: ${n}`);
          }
          releaseParams(P);
        }
      }
    }
  });
}

// ---- k < E: float64 masked reference, router included ---------------------------

// Each tile design of the weight-gradient outer products, not only the adapter's.
const OUTER_RUNS = (["relu", "gelu"] as MoeActivation[]).flatMap((a) =>
  (Object.keys(MOE_OUTER_DESIGNS) as MoeOuterDesign[]).map((outer) => ({ a, outer }))
);
for (const { a, outer } of OUTER_RUNS) {
  Deno.test(`moeFfnTrain() with k < E matches the float64 masked reference (${a}, outer ${outer})`, async () => {
    const cases: [MoeCase, number][] = [
      [{ N: 7, C: 16, E: 4, dff: 24, bias: true }, 2],
      [{ N: 33, C: 16, E: 4, dff: 32, bias: true }, 1],
      [{ N: 33, C: 12, E: 4, dff: 24, bias: false }, 3],
      [{ N: 19, C: 13, E: 4, dff: 20, bias: true }, 2],
      [{ N: 40, C: 16, E: 8, dff: 64, bias: true }, 3],
      // Several outer tiles per expert in each design, partial last tiles.
      [{ N: 40, C: 36, E: 4, dff: 80, bias: true }, 2],
      [{ N: 24, C: 19, E: 4, dff: 72, bias: false }, 3],
      // Rows of 256 bytes: the backward's packs are copies (moePackIsCopy).
      [{ N: 20, C: 64, E: 4, dff: 64, bias: true }, 2],
    ];
    for (const [c, k] of cases) {
      const never = c.E - 2;
      const d = makeMoeData(c, 7 * c.N + k, never);
      const ref = reference(d, c, k, a);
      assert.ok(!ref.chosen.has(never), "the planted expert is never chosen");
      const P = upload(d, c);
      const got = await run(P, (p) => moeFfnTrain(p.h, p.w, c.E, k, a, { outer }));
      const what = `outer ${outer}, N ${c.N} C ${c.C} E ${c.E} k ${k}`;
      const want: Record<string, Float64Array> = {
        out: ref.out,
        h: ref.dh,
        fcW: ref.fcW,
        fcB: ref.fcB,
        projW: ref.projW,
        projB: ref.projB,
        router: ref.router,
      };
      for (const n of NAMES) {
        if (got[n]) assertAllClose(got[n]!, want[n], TOL, `${what}: ${n}`);
      }
      // The unchosen expert's slices are exactly zero (not merely small).
      const s = c.dff / c.E;
      const zero = (arr: Float32Array | null, idx: number[], n: string) => {
        for (const i of idx) assert.ok(Object.is(arr![i], 0), `${what}: ${n}[${i}] = ${arr![i]}`);
      };
      const rowsOf = (e: number, w: number) =>
        Array.from({ length: s * w }, (_, i) => e * s * w + i);
      zero(got.fcW, rowsOf(never, c.C), "c_fc.weight");
      if (got.fcB) zero(got.fcB, rowsOf(never, 1), "c_fc.bias");
      zero(
        got.projW,
        Array.from({ length: c.C * s }, (_, i) => Math.floor(i / s) * c.dff + never * s + (i % s)),
        "c_proj.weight",
      );
      zero(got.router, Array.from({ length: c.C }, (_, i) => never * c.C + i), "router");
      releaseParams(P);
    }
  });
}

Deno.test("moeFfnTrain() h gradient matches finite differences of the forward at k = E", async () => {
  for (const a of ["relu", "gelu"] as MoeActivation[]) {
    const c: MoeCase = { N: 3, C: 12, E: 4, dff: 24, bias: true };
    const d = makeMoeData(c, 5);
    const P = upload(d, c);
    const got = await run(P, (p) => moeFfnTrain(p.h, p.w, 4, 4, a, { routerInputGrad: false }));
    // Loss Σ G·out of the float64 forward (k = E: smooth in h except at ReLU kinks).
    const loss = (h: Float64Array): number => {
      const out = reference(d, c, 4, a, h).out;
      let v = 0;
      for (let i = 0; i < out.length; i++) v += d.G[i] * out[i];
      return v;
    };
    const eps = 1e-3;
    const fd = new Float64Array(c.N * c.C);
    for (let i = 0; i < fd.length; i++) {
      const hp = Float64Array.from(d.h);
      const hm = Float64Array.from(d.h);
      hp[i] += eps;
      hm[i] -= eps;
      fd[i] = (loss(hp) - loss(hm)) / (2 * eps);
    }
    assertAllClose(got.h!, fd, { atol: 1e-3, rtol: 1e-3 }, `${a}: dh vs finite differences`);
    releaseParams(P);
  }
});

Deno.test("moeFfnTrain() is deterministic and keeps no buffers across steps", async () => {
  const c: MoeCase = { N: 33, C: 16, E: 4, dff: 32, bias: true };
  const P = upload(makeMoeData(c, 11, 1), c);
  const step = (p: Params) => moeFfnTrain(p.h, p.w, 4, 2, "gelu");
  const first = await run(P, step);
  const before = g.pool.stats().liveBuffers;
  for (let i = 0; i < 3; i++) {
    const again = await run(P, step);
    for (const n of NAMES) {
      if (first[n]) assert.deepEqual(again[n], first[n], `${n} differs between runs`);
    }
  }
  // Forward only with grad on but no backward: the scope releases what was kept.
  tidy(() => {
    step(P);
  });
  await g.recorder.sync();
  assert.equal(g.pool.stats().liveBuffers, before, "live buffers grew");
  releaseParams(P);
});

Deno.test("moeFfnTrain() rejects bad input", () => {
  const c: MoeCase = { N: 4, C: 8, E: 2, dff: 8, bias: true };
  const P = upload(makeMoeData(c, 3), c);
  tidy(() => {
    assert.throws(() => moeFfnTrain(P.h, P.w, 2, 3), ConfigError);
    assert.throws(() => moeFfnTrain(P.h, P.w, 3, 1), ConfigError);
    assert.throws(() => moeFfnTrain(P.h.view([2, 16]), P.w, 2, 1), ShapeError);
    assert.throws(
      () => moeFfnTrain(P.h, { ...P.w, router: P.w.fcW }, 2, 1),
      ShapeError,
    );
    assert.throws(
      () => moeFfnTrain(P.h, { ...P.w, projW: P.w.fcW.view([4, 16]) }, 2, 1),
      ShapeError,
    );
    assert.throws(
      () => moeFfnTrain(P.h, P.w, 2, 1, "tanh" as MoeActivation),
      ConfigError,
    );
    const dead = tensor(new Float32Array(32), [4, 8]);
    dead.release();
    assert.throws(() => moeFfnTrain(dead, P.w, 2, 1), TensorError);
  });
  releaseParams(P);
});
