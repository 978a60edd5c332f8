/**
 * GPU AdamW vs a float64 TypeScript reference written from the textbook form
 * (p -= lr * wd * p; m-hat / (sqrt(v-hat) + eps)), so the kernel's folded
 * constants (lr / bc1, sqrt(bc2)) are checked against an independent
 * formulation. Tolerance for p, m, v after several steps: atol 1e-6,
 * rtol 1e-5 (f32 storage vs f64 reference).
 */
import assert from "node:assert/strict";
import { AdamW, defaultNoDecay } from "../../../core/optim/adamw.ts";
import { ConfigError, ShapeError, TensorError } from "../../../core/errors.ts";
import { tidy, tidyAsync } from "../../../core/scope.ts";
import { readAll, type Tensor, tensor } from "../../../core/tensor.ts";
import { assertAllClose, randn, setupGpu } from "../../_helpers.ts";

const g = await setupGpu();

interface RefHyper {
  lr: number;
  b1: number;
  b2: number;
  eps: number;
  wd: number;
  t: number;
  scale: number;
}

interface RefState {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
}

function refStep(s: RefState, grad: ArrayLike<number>, h: RefHyper): void {
  const bc1 = 1 - h.b1 ** h.t;
  const bc2 = 1 - h.b2 ** h.t;
  for (let i = 0; i < s.p.length; i++) {
    const gi = grad[i] * h.scale;
    s.p[i] -= h.lr * h.wd * s.p[i];
    s.m[i] = h.b1 * s.m[i] + (1 - h.b1) * gi;
    s.v[i] = h.b2 * s.v[i] + (1 - h.b2) * gi * gi;
    const mHat = s.m[i] / bc1;
    const vHat = s.v[i] / bc2;
    s.p[i] -= h.lr * mHat / (Math.sqrt(vHat) + h.eps);
  }
}

const TOL = { atol: 1e-6, rtol: 1e-5 };

// Odd sizes take the scalar kernel, multiples of 4 the vec4 one.
const SHAPES: number[][] = [[7, 13], [1], [16, 8], [33, 65], [5], [3, 4, 5]];

async function runAgainstReference(
  opts: {
    weightDecay: number;
    clip?: number;
    steps: number;
    seed: number;
    lr0?: number;
    eps?: number;
    gradStd?: number;
  },
): Promise<void> {
  const [b1, b2, eps] = [0.9, 0.95, opts.eps ?? 1e-8];
  await tidyAsync(async () => {
    const refs: RefState[] = SHAPES.map((shape, k) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const p = randn(n, opts.seed + k);
      return { p, m: new Float64Array(n), v: new Float64Array(n) };
    });
    const params = SHAPES.map((shape, k) =>
      tensor(refs[k].p, shape, { requiresGrad: true, name: `p${k}` })
    );
    const opt = new AdamW(params, { betas: [b1, b2], eps, weightDecay: opts.weightDecay });
    const scaleT = opts.clip !== undefined ? tensor([opts.clip], [1]) : undefined;
    for (let t = 1; t <= opts.steps; t++) {
      const lr = (opts.lr0 ?? 0.01) / t + 1e-3;
      params.forEach((p, k) => {
        const gr = randn(p.size, opts.seed * 1000 + t * 10 + k, opts.gradStd ?? 0.5);
        p.grad = tensor(gr, p.shape);
        refStep(refs[k], gr, {
          lr,
          b1,
          b2,
          eps,
          wd: defaultNoDecay(p) ? 0 : opts.weightDecay,
          t,
          scale: opts.clip ?? 1,
        });
      });
      opt.step(lr, scaleT);
      opt.zeroGrad();
      const got = await readAll(
        params.flatMap((p) => [p, opt.moments(p).m, opt.moments(p).v]),
      );
      refs.forEach((r, k) => {
        assertAllClose(got[3 * k], r.p, TOL, `p${k} ${SHAPES[k]} after step ${t}`);
        assertAllClose(got[3 * k + 1], r.m, TOL, `m${k} after step ${t}`);
        assertAllClose(got[3 * k + 2], r.v, { atol: 1e-8, rtol: 1e-5 }, `v${k} after step ${t}`);
      });
    }
    assert.equal(opt.stepCount, opts.steps);
    opt.dispose();
  });
}

Deno.test("AdamW.step() matches the float64 reference over 6 steps without weight decay", async () => {
  await runAgainstReference({ weightDecay: 0, steps: 6, seed: 1 });
});

Deno.test("AdamW.step() matches the float64 reference over 6 steps with weight decay 0.5", async () => {
  // lr up to 0.1 so that decaying after the Adam step instead of before
  // (an lr^2 * wd difference, ~5e-3) is far outside the tolerance.
  await runAgainstReference({ weightDecay: 0.5, steps: 6, seed: 2, lr0: 0.1 });
});

Deno.test("AdamW.step() adds eps to sqrt(v-hat), not to sqrt(v)", async () => {
  // Gradients near eps: placing eps before the bias correction (Adam paper's
  // eps-hat) would change the update by ~4x eps / |g| at step 1.
  await runAgainstReference({ weightDecay: 0, steps: 3, seed: 4, eps: 1e-3, gradStd: 2e-3 });
});

Deno.test("AdamW.step() scales gradients by a GPU clip factor", async () => {
  await runAgainstReference({ weightDecay: 0.1, clip: 0.37, steps: 3, seed: 3 });
});

Deno.test("AdamW bias correction: a constant gradient moves p by lr per step at steps 1..5", async () => {
  // With g constant, m-hat = g and v-hat = g^2 exactly at every step, so the
  // update is lr * g / (|g| + eps); without (or with wrong) bias correction
  // step 1 would move ~3x (beta2 = 0.999) or 0.1x too far.
  await tidyAsync(async () => {
    const n = 10;
    const grad = Float64Array.from({ length: n }, (_, i) => (i % 2 ? 1 : -1) * (0.01 + i * 0.3));
    const p = tensor(new Float64Array(n).fill(1), [n], { requiresGrad: true, name: "w" });
    const opt = new AdamW([p], { betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 });
    let prev = new Float64Array(n).fill(1);
    for (let t = 1; t <= 5; t++) {
      const lr = 0.001 * t;
      p.grad = tensor(grad, [n]);
      opt.step(lr);
      opt.zeroGrad();
      const [now] = await readAll([p]);
      const delta = Array.from(now, (x, i) => x - prev[i]);
      const expected = Array.from(grad, (x) => -lr * x / (Math.abs(x) + 1e-8));
      assertAllClose(delta, expected, { atol: 2e-7, rtol: 1e-4 }, `update at step ${t}`);
      prev = Float64Array.from(now);
    }
    opt.dispose();
  });
});

Deno.test("AdamW decays matrices but not 1-D params or biases (nanoGPT rule)", async () => {
  await tidyAsync(async () => {
    // Zero gradients: m = v = 0, so the Adam part is 0 and only decay moves p.
    const w = tensor(randn(12, 5), [3, 4], { requiresGrad: true, name: "h.0.mlp.c_fc.weight" });
    const b = tensor(randn(4, 6), [4], { requiresGrad: true, name: "h.0.mlp.c_fc.bias" });
    const ln = tensor(randn(4, 7), [4], { requiresGrad: true, name: "h.0.ln_1.weight" });
    const b2 = tensor(randn(6, 8), [2, 3], { requiresGrad: true, name: "odd.bias" });
    const params = [w, b, ln, b2];
    const opt = new AdamW(params, { lr: 0.1, weightDecay: 0.5 });
    assert.deepEqual(params.map((p) => opt.decays(p)), [true, false, false, false]);
    const before = await readAll(params);
    for (const p of params) p.grad = tensor(new Float32Array(p.size), p.shape);
    opt.step();
    opt.zeroGrad();
    const after = await readAll(params);
    assertAllClose(after[0], Array.from(before[0], (x) => x * (1 - 0.1 * 0.5)), TOL, "decayed w");
    for (let k = 1; k < 4; k++) {
      assert.deepEqual(Array.from(after[k]), Array.from(before[k]), `${params[k].name} changed`);
    }
    opt.dispose();
  });
});

Deno.test("AdamW honours a custom noDecay rule", async () => {
  await tidyAsync(async () => {
    const w = tensor(randn(6, 9), [2, 3], { requiresGrad: true, name: "wte" });
    const opt = new AdamW([w], { lr: 0.1, weightDecay: 0.5, noDecay: (p) => p.name === "wte" });
    assert.equal(opt.decays(w), false);
    const [before] = await readAll([w]);
    w.grad = tensor(new Float32Array(6), [2, 3]);
    opt.step();
    opt.zeroGrad();
    const [after] = await readAll([w]);
    assert.deepEqual(Array.from(after), Array.from(before));
    opt.dispose();
  });
});

Deno.test("AdamW.step() skips parameters without a gradient and zeroGrad() releases grads", async () => {
  await tidyAsync(async () => {
    const a = tensor(randn(5, 10), [5], { requiresGrad: true, name: "a" });
    const b = tensor(randn(5, 11), [5], { requiresGrad: true, name: "b" });
    const opt = new AdamW([a, b], { lr: 0.1 });
    const [a0, b0] = await readAll([a, b]);
    const grad = tensor(randn(5, 12), [5]);
    a.grad = grad;
    opt.step();
    opt.zeroGrad();
    assert.equal(a.grad, null);
    assert.ok(grad.released, "zeroGrad() must release the gradient");
    const [a1, b1] = await readAll([a, b]);
    assert.notDeepEqual(Array.from(a1), Array.from(a0));
    assert.deepEqual(Array.from(b1), Array.from(b0));
    opt.dispose();
  });
});

Deno.test("AdamW.state()/loadState() resume gives the same parameters as an uninterrupted run", async () => {
  await tidyAsync(async () => {
    const shape = [3, 7];
    const init = randn(21, 20);
    const mk = () => [
      tensor(init, shape, { requiresGrad: true, name: "w" }),
      tensor(init.slice(0, 7), [7], { requiresGrad: true, name: "b" }),
    ];
    const grads = (t: number, p: Tensor) => randn(p.size, 100 + t * 2 + p.size);
    const run = (opt: AdamW, params: Tensor[], from: number, to: number) => {
      for (let t = from; t <= to; t++) {
        for (const p of params) p.grad = tensor(grads(t, p), p.shape);
        opt.step(0.01 * t);
        opt.zeroGrad();
      }
    };
    const pa = mk();
    const a = new AdamW(pa, { weightDecay: 0.1 });
    run(a, pa, 1, 3);
    const st = a.state();
    assert.equal(st.step, 3);
    assert.deepEqual(Object.keys(st.tensors).sort(), [
      "optim.m.b",
      "optim.m.w",
      "optim.v.b",
      "optim.v.w",
    ]);
    // A fresh optimizer over parameters with a's values, loaded from a's state.
    const pb = mk();
    pb.forEach((p, k) => g.recorder.copy(pa[k].buffer, 0, p.buffer, 0, p.bytes));
    const b = new AdamW(pb, { weightDecay: 0.1 });
    b.loadState(st);
    assert.equal(b.stepCount, 3);
    run(a, pa, 4, 5);
    run(b, pb, 4, 5);
    const got = await readAll([...pa, ...pb, a.moments(pa[0]).v, b.moments(pb[0]).v]);
    assert.deepEqual(Array.from(got[2]), Array.from(got[0]));
    assert.deepEqual(Array.from(got[3]), Array.from(got[1]));
    assert.deepEqual(Array.from(got[5]), Array.from(got[4]));
    a.dispose();
    b.dispose();
  });
});

Deno.test("AdamW.setMoments() replaces the moments and takes ownership", () => {
  tidy(() => {
    const w = tensor([1, 2, 3, 4], [4], { requiresGrad: true, name: "w" });
    const opt = new AdamW([w], { lr: 0.1, weightDecay: 0 });
    const old = opt.moments(w);
    const m = tensor([0.1, -0.2, 0.3, -0.4], [4]);
    const v = tensor([0.01, 0.04, 0.09, 0.16], [4]);
    opt.setMoments(w, m, v);
    assert.ok(old.m.released && old.v.released);
    assert.equal(opt.moments(w).m, m);
    assert.throws(() => opt.setMoments(w, tensor([1], [1]), v), ShapeError);
    opt.dispose();
    assert.ok(m.released && v.released);
  });
});

Deno.test("AdamW rejects bad parameters, options, gradients and state", () => {
  tidy(() => {
    const w = tensor([1, 2, 3], [3], { requiresGrad: true, name: "w" });
    const frozen = tensor([1, 2, 3], [3], { name: "frozen" });
    assert.throws(() => new AdamW([frozen]), (e: Error) => {
      assert.ok(e instanceof TensorError);
      assert.match(e.message, /frozen \[3\].*requiresGrad/);
      return true;
    });
    const twin = tensor([1], [1], { requiresGrad: true, name: "w" });
    assert.throws(() => new AdamW([w, twin]), /two parameters are named w/);
    assert.throws(() => new AdamW([w], { betas: [1, 0.9] }), ConfigError);
    assert.throws(() => new AdamW([w], { betas: [0.9, -0.1] }), ConfigError);
    assert.throws(() => new AdamW([w], { lr: -1 }), ConfigError);
    assert.throws(() => new AdamW([w], { eps: NaN }), ConfigError);
    assert.throws(() => new AdamW([w], { weightDecay: -0.1 }), ConfigError);

    const opt = new AdamW([w]);
    w.grad = tensor([1, 2], [2]);
    assert.throws(() => opt.step(), (e: Error) => {
      assert.ok(e instanceof ShapeError);
      assert.match(e.message, /AdamW\.step: gradient \[2\] does not match w \[3\]/);
      return true;
    });
    assert.equal(opt.stepCount, 0, "a rejected step must not count");
    w.grad = tensor([1, 2, 3], [3]);
    assert.throws(() => opt.step(undefined, tensor([1, 2], [2])), ShapeError);
    assert.throws(() => opt.step(Infinity), ConfigError);
    const released = tensor([1, 2, 3], [3]);
    released.release();
    w.grad = released;
    assert.throws(() => opt.step(), /AdamW\.step: input 0 \(t\d+ \[3\]\) was used after release/);
    w.grad = null;
    assert.throws(() => opt.moments(frozen), /not a parameter/);
    assert.throws(() => opt.loadState({ step: 1, tensors: {} }), /missing optim\.m\.w/);
    assert.throws(
      () =>
        opt.loadState({
          step: 1,
          tensors: { "optim.m.w": tensor([1], [1]), "optim.v.w": tensor([1, 2, 3], [3]) },
        }),
      /optim\.m\.w is f32 \[1\], expected f32 \[3\]/,
    );
    opt.dispose();
    assert.throws(() => opt.step(), /disposed/);
  });
});

Deno.test("AdamW.step() with an expert mask leaves experts without tokens untouched", async () => {
  // c_fc-like [d_ff = 8, C = 3] with E = 4 experts of 2 rows, and c_proj-like [3, 8] by columns.
  const E = 4, s = 2, C = 3, F = 8;
  const counts = tensor([5, 0, 2, 0], [E], { dtype: "u32" });
  const fc = tensor(randn(F * C, 21), [F, C], { requiresGrad: true, name: "fc" });
  const proj = tensor(randn(C * F, 22), [C, F], { requiresGrad: true, name: "proj" });
  const before = await readAll([fc, proj]);
  const opt = new AdamW([fc, proj], { lr: 0.1, weightDecay: 0.1 });
  const ref = new AdamW([
    tensor(before[0], [F, C], { requiresGrad: true, name: "fc" }),
    tensor(before[1], [C, F], { requiresGrad: true, name: "proj" }),
  ], { lr: 0.1, weightDecay: 0.1 });
  for (let step = 0; step < 3; step++) {
    const gFc = randn(F * C, 30 + step);
    const gProj = randn(C * F, 40 + step);
    fc.grad = tensor(gFc, [F, C]);
    proj.grad = tensor(gProj, [C, F]);
    ref.params[0].grad = tensor(gFc, [F, C]);
    ref.params[1].grad = tensor(gProj, [C, F]);
    opt.step(
      undefined,
      undefined,
      new Map([
        [fc, { counts: counts.buffer, modulo: F * C, divisor: s * C }],
        [proj, { counts: counts.buffer, modulo: F, divisor: s }],
      ]),
    );
    ref.step();
    opt.zeroGrad();
    ref.zeroGrad();
  }
  const [pf, pp, rf, rp, mf] = await readAll([
    fc,
    proj,
    ...ref.params,
    opt.moments(fc).m,
  ]);
  for (let i = 0; i < F * C; i++) {
    const e = Math.floor(i / (s * C));
    if (e === 1 || e === 3) {
      assert.equal(pf[i], before[0][i], `fc[${i}] of an idle expert changed`);
      assert.equal(mf[i], 0, `moment of an idle expert changed`);
    } else assert.equal(pf[i], rf[i], `fc[${i}] of an active expert`);
  }
  for (let i = 0; i < C * F; i++) {
    const e = Math.floor((i % F) / s);
    assert.equal(pp[i], e === 1 || e === 3 ? before[1][i] : rp[i], `proj[${i}]`);
  }
  opt.dispose();
  ref.dispose();
  for (const t of [counts, fc, proj, ...ref.params]) t.release();
});
