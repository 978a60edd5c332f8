/**
 * 50 training-style steps (forward, backward, global-norm clip, AdamW step,
 * zeroGrad), each in a `tidyAsync` scope with one read of loss + grad norm:
 * after a warm-up step the pool's live buffers and bytes must not grow (and
 * no new buffers get created), the tape must be empty after every step, and
 * each step must wait on the host at most once.
 *
 * Two models: an elementwise regression (y = x * w + b, loss = mean((y -
 * t)^2)) and a small MLP classifier (linear → relu → linear → cross-entropy),
 * so matmul, its texture scratch and the fused cross-entropy are covered too.
 * The whole GPT's training loop is checked the same way in
 * tests/pipelines/train/run_test.ts.
 */
import assert from "node:assert/strict";
import { lrAt } from "../../core/lr_schedule.ts";
import { add, mul, sub } from "../../core/ops/add.ts";
import { relu } from "../../core/ops/activation.ts";
import { crossEntropy } from "../../core/ops/cross_entropy.ts";
import { linear } from "../../core/ops/matmul.ts";
import { mean } from "../../core/ops/reduce.ts";
import { AdamW } from "../../core/optim/adamw.ts";
import { gradClip } from "../../core/optim/clip.ts";
import { tidyAsync } from "../../core/scope.ts";
import { backward, tapeSize } from "../../core/tape.ts";
import { readAll, tensor } from "../../core/tensor.ts";
import { randint, randn, setupGpu } from "../_helpers.ts";

const g = await setupGpu();

const [B, T, C] = [4, 8, 16];
const STEPS = 50;

Deno.test("50 training steps: no pool growth, empty tape, one host wait per step", async () => {
  // A reachable target (t = x * wTrue + bTrue), so the loss can fall a lot.
  const xHost = randn(B * T * C, 1);
  const wTrue = randn(T * C, 2, 0.3);
  const bTrue = randn(C, 4, 0.3);
  const x = tensor(xHost, [B, T, C]);
  const target = tensor(xHost.map((v, i) => v * wTrue[i % (T * C)] + bTrue[i % C]), [B, T, C]);
  const w = tensor(randn(T * C, 3, 0.1), [T, C], { requiresGrad: true, name: "w" });
  const b = tensor(new Float32Array(C), [C], { requiresGrad: true, name: "b" });
  const params = [w, b];
  const opt = new AdamW(params, { weightDecay: 0.1 });
  const sched = { maxLr: 3e-2, minLr: 3e-3, warmup: 5, total: STEPS };

  const losses: number[] = [];
  const norms: number[] = [];
  let baseline: { liveBuffers: number; liveBytes: number; created: number } | null = null;
  for (let step = 0; step < STEPS; step++) {
    const waits = g.recorder.stats().hostWaits;
    const [loss, norm] = await tidyAsync(async () => {
      const y = add(mul(x, w), b); // (B, T, C)
      const d = sub(y, target);
      const l = mean(mul(d, d)); // ()
      backward(l);
      const clip = gradClip(params, 1.0);
      opt.step(lrAt(step, sched), clip.factor);
      opt.zeroGrad();
      const [lv, nv] = await readAll([l, clip.norm]);
      return [lv[0], nv[0]];
    });
    assert.ok(g.recorder.stats().hostWaits - waits <= 1, `step ${step} waited more than once`);
    assert.equal(tapeSize(), 0, `tape not empty after step ${step}`);
    assert.ok(params.every((p) => p.grad === null), "zeroGrad() cleared the grads");
    losses.push(loss);
    norms.push(norm);
    const s = g.pool.stats();
    if (!baseline) {
      baseline = { liveBuffers: s.liveBuffers, liveBytes: s.liveBytes, created: s.created };
    } else {
      assert.deepEqual(
        { liveBuffers: s.liveBuffers, liveBytes: s.liveBytes, created: s.created },
        baseline,
        `pool grew at step ${step}`,
      );
    }
  }
  assert.ok(losses.every(Number.isFinite) && norms.every((n) => Number.isFinite(n) && n > 0));
  assert.ok(
    losses[STEPS - 1] < 0.3 * losses[0],
    `loss should fall: ${losses[0]} -> ${losses[STEPS - 1]}`,
  );

  const s0 = g.pool.stats().liveBuffers;
  opt.dispose();
  for (const t of [x, target, w, b]) t.release();
  // Moments (2 per param), the optimizer's constant 1, inputs and params.
  assert.equal(s0 - g.pool.stats().liveBuffers, 2 * params.length + 1 + 4);
});

Deno.test("50 MLP training steps (matmul, relu, cross-entropy): no pool growth, one wait", async () => {
  const [N, D, H, V] = [64, 32, 64, 10];
  const x = tensor(randn(N * D, 11), [N, D]);
  const labels = tensor(randint(N, V, 12), [N], { dtype: "u32" });
  const w1 = tensor(randn(H * D, 13, 0.2), [H, D], { requiresGrad: true, name: "w1" });
  const b1 = tensor(new Float32Array(H), [H], { requiresGrad: true, name: "b1" });
  const w2 = tensor(randn(V * H, 14, 0.2), [V, H], { requiresGrad: true, name: "w2" });
  const params = [w1, b1, w2];
  const opt = new AdamW(params, { weightDecay: 0.01 });
  const losses: number[] = [];
  let baseline: { liveBuffers: number; liveBytes: number; created: number } | null = null;
  for (let step = 0; step < STEPS; step++) {
    const waits = g.recorder.stats().hostWaits;
    const loss = await tidyAsync(async () => {
      const logits = linear(relu(linear(x, w1, b1)), w2, null); // (N, V)
      const l = crossEntropy(logits, labels);
      backward(l);
      const clip = gradClip(params, 1.0);
      opt.step(1e-2, clip.factor);
      opt.zeroGrad();
      return (await readAll([l]))[0][0];
    });
    assert.ok(g.recorder.stats().hostWaits - waits <= 1, `step ${step} waited more than once`);
    assert.equal(tapeSize(), 0);
    losses.push(loss);
    const s = g.pool.stats();
    const now = { liveBuffers: s.liveBuffers, liveBytes: s.liveBytes, created: s.created };
    if (!baseline) baseline = now;
    else assert.deepEqual(now, baseline, `pool grew at step ${step}`);
  }
  // Memorising 64 random labels: the loss must fall well below log(10) = 2.30.
  assert.ok(losses[STEPS - 1] < 0.5 * losses[0], `loss ${losses[0]} -> ${losses[STEPS - 1]}`);
  opt.dispose();
  for (const t of [x, labels, ...params]) t.release();
});
