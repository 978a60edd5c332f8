/**
 * Tensor API contract: bad input throws the right error naming the op and
 * the shapes; scopes release what they should and keep what they return;
 * release is idempotent and views share storage safely.
 */
import assert from "node:assert/strict";
import { add, scale } from "../../core/ops/add.ts";
import { ShapeError, TensorError } from "../../core/errors.ts";
import { keep, scopeDepth, tidy, tidyAsync } from "../../core/scope.ts";
import { backward, tapeSize } from "../../core/tape.ts";
import { empty, full, readAll, type Tensor, tensor, zeros } from "../../core/tensor.ts";
import { setupGpu } from "../_helpers.ts";

const g = await setupGpu();
const live = () => g.pool.stats().liveBuffers;

function throwsWith(fn: () => unknown, cls: typeof ShapeError, re: RegExp): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e.name}: ${e.message}`);
    assert.match(e.message, re);
    return true;
  });
}

Deno.test("tensor() rejects data that does not fill the shape, naming both", () => {
  throwsWith(() => tensor([1, 2, 3, 4, 5], [2, 3]), ShapeError, /tensor\(\): 5 values .*\[2, 3\]/);
  throwsWith(() => tensor([], [1]), ShapeError, /0 values .*\[1\]/);
  throwsWith(() => empty([2, -1]), ShapeError, /Invalid shape \[2, -1\]/);
  throwsWith(() => zeros([1.5]), ShapeError, /Invalid shape \[1.5\]/);
});

Deno.test("an op given a released tensor throws TensorError naming the op and the shape", () => {
  tidy(() => {
    const a = tensor([1, 2, 3, 4, 5, 6], [2, 3], { name: "a" });
    const b = tensor([1, 2, 3], [3], { name: "b" });
    b.release();
    throwsWith(() => add(a, b), TensorError, /^add: input 1 \(b \[3\]\) was used after release/);
    a.release();
    throwsWith(() => scale(a, 2), TensorError, /^scale: input 0 \(a \[2, 3\]\) .*after release/);
    throwsWith(() => a.buffer, TensorError, /Tensor a \[2, 3\] used after release/);
    throwsWith(() => a.view([6]), TensorError, /a \[2, 3\] used after release/);
  });
});

Deno.test("view() with a wrong element count throws ShapeError naming both shapes", () => {
  tidy(() => {
    const t = zeros([2, 3]);
    throwsWith(() => t.view([4]), ShapeError, /Cannot view \[2, 3\] as \[4\]/);
    throwsWith(() => t.view([3, -2]), ShapeError, /Invalid shape/);
    assert.deepEqual(t.view([3, 2]).shape, [3, 2]);
  });
});

Deno.test("item() needs one element; data() needs f32", async () => {
  await tidyAsync(async () => {
    await assert.rejects(() => zeros([2]).item(), ShapeError);
    await assert.rejects(() => zeros([2], "u32").data(), TensorError);
    assert.equal(await full([1, 1], 2.5).item(), 2.5);
  });
});

Deno.test("tidy() releases what fn creates and keeps what it returns, in arrays and objects too", async () => {
  const before = live();
  let inner: Tensor[] = [];
  const out = tidy(() => {
    inner = [zeros([4]), zeros([8])];
    const kept = keep(zeros([3]));
    const r = add(inner[0], inner[0]);
    return { r, list: [zeros([2])], kept: 1 as const, k: kept };
  });
  assert.ok(inner.every((t) => t.released), "intermediates released");
  assert.ok(!out.r.released && !out.list[0].released && !out.k.released, "results kept");
  assert.equal(scopeDepth(), 0);
  assert.equal(live(), before + 3);
  assert.deepEqual(Array.from(await out.r.toArray()), [0, 0, 0, 0]);
  out.r.release();
  out.list[0].release();
  out.k.release();
  assert.equal(live(), before);
});

Deno.test("nested tidy() moves a returned tensor to the enclosing scope", () => {
  const before = live();
  let fromInner: Tensor | null = null;
  const outer = tidy(() => {
    fromInner = tidy(() => zeros([5]));
    assert.ok(!fromInner.released, "alive in the outer scope");
    return zeros([1]);
  });
  assert.ok(fromInner!.released, "released when the outer scope closed");
  assert.ok(!outer.released);
  outer.release();
  assert.equal(live(), before);
});

Deno.test("tidy() releases everything when fn throws, and leaves outside tensors alone", () => {
  const outside = zeros([6]);
  const before = live();
  let made: Tensor | null = null;
  assert.throws(() =>
    tidy(() => {
      made = zeros([7]);
      add(outside, outside);
      throw new Error("boom");
    }), /boom/);
  assert.ok(made!.released);
  assert.ok(!outside.released, "a tensor made outside the scope is not the scope's");
  assert.equal(live(), before);
  assert.equal(scopeDepth(), 0);
  outside.release();
});

Deno.test("tidyAsync() keeps its scope across awaits", async () => {
  const before = live();
  let t: Tensor | null = null;
  const v = await tidyAsync(async () => {
    t = full([3], 2);
    const x = await t.toArray();
    zeros([9]); // made after an await: still this scope's
    return x[0];
  });
  assert.equal(v, 2);
  assert.ok(t!.released);
  assert.equal(live(), before);
});

Deno.test("release() is idempotent and a view keeps the storage alive until both are released", async () => {
  const before = live();
  const t = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
  const v = t.view([3, 2]);
  assert.equal(v.buffer, t.buffer, "a view shares its storage");
  t.release();
  t.release();
  assert.ok(t.released && !v.released);
  assert.equal(live(), before + 1, "storage still held by the view");
  assert.deepEqual(Array.from(await v.toArray()), [1, 2, 3, 4, 5, 6]);
  // A new tensor must not get the view's buffer while the view lives.
  const other = full([6], 9);
  assert.notEqual(other.buffer, v.buffer);
  assert.deepEqual(Array.from(await v.toArray()), [1, 2, 3, 4, 5, 6]);
  v.release();
  v.release();
  other.release();
  assert.equal(live(), before);
});

Deno.test("tensors in a scope with recorded ops leave no tape nodes behind", () => {
  tidy(() => {
    const x = tensor([1, 2], [2], { requiresGrad: true });
    scale(add(x, x), 3);
    assert.ok(tapeSize() >= 2);
  });
  assert.equal(tapeSize(), 0);
});

Deno.test("backward() rejects a seed of another size, naming both shapes", () => {
  tidy(() => {
    const x = tensor([1, 2], [2], { requiresGrad: true });
    const y = scale(x, 2);
    throwsWith(
      () => backward(y, zeros([3])),
      ShapeError,
      /backward\(\): seed \[3\] does not match root \[2\]/,
    );
  });
});

Deno.test("readAll() reads several tensors, f32 and u32, in one host wait", async () => {
  await tidyAsync(async () => {
    const a = tensor([1.5, -2], [2]);
    const b = tensor([7, 4294967295], [2], { dtype: "u32" });
    const waits = g.recorder.stats().hostWaits;
    const [ra, rb] = await readAll([a, b]);
    assert.equal(g.recorder.stats().hostWaits - waits, 1);
    assert.ok(ra instanceof Float32Array && rb instanceof Uint32Array);
    assert.deepEqual(Array.from(ra), [1.5, -2]);
    assert.deepEqual(Array.from(rb), [7, 4294967295]);
  });
});
