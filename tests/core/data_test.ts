import assert from "node:assert/strict";
import { join } from "node:path";
import { BROWN_SOURCE, loadBrown } from "../../core/corpus_brown.ts";
import {
  BatchSampler,
  evalWindows,
  loadBrownDataset,
  loadDataset,
  loadText,
  packEvalBatch,
  requireWindow,
  type SamplerState,
  unigramEntropyBits,
  windowGroups,
} from "../../core/data.ts";
import { ConfigError } from "../../core/errors.ts";
import { Rng } from "../../core/rng.ts";

const enc = (s: string) => new TextEncoder().encode(s);

function withTmp(fn: (dir: string) => void): void {
  const dir = Deno.makeTempDirSync({ prefix: "ssd_data_test_" });
  try {
    fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

function throwsConfig(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(e instanceof ConfigError, `${e.name}: ${e.message}`);
    assert.match(e.message, re);
    assert.ok(!e.message.includes("\n") && !e.message.endsWith("."), e.message);
    return true;
  });
}

/** Tokens whose value gives their position back (n <= 256), to recover window starts. */
function iota(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => i);
}

Deno.test("loadText(file): bytes in order, the last 5% (rounded up) is validation", () => {
  withTmp((dir) => {
    const text = "héllo world, ".repeat(17) + "end";
    const bytes = enc(text);
    Deno.writeTextFileSync(join(dir, "a.txt"), text);
    const ds = loadText(join(dir, "a.txt"));
    const nVal = Math.ceil(bytes.length * 0.05);
    assert.deepEqual(ds.val, bytes.subarray(bytes.length - nVal));
    assert.deepEqual(ds.train, bytes.subarray(0, bytes.length - nVal));
    assert.equal(ds.source, join(dir, "a.txt"));
  });
});

Deno.test("loadText(folder): .txt files sorted by name, newline between, others ignored", () => {
  withTmp((dir) => {
    Deno.writeTextFileSync(join(dir, "b.txt"), "second\n");
    Deno.writeTextFileSync(join(dir, "a.txt"), "first"); // no final newline
    Deno.writeTextFileSync(join(dir, "C.txt"), "upper sorts first");
    Deno.writeTextFileSync(join(dir, "notes.md"), "ignored");
    Deno.writeTextFileSync(join(dir, "empty.txt"), "");
    Deno.mkdirSync(join(dir, "sub.txt")); // a folder named .txt is not a file
    const ds = loadText(dir, { val: join(dir, "b.txt") });
    assert.equal(new TextDecoder().decode(ds.train), "upper sorts first\nfirst\nsecond\n");
    assert.equal(new TextDecoder().decode(ds.val), "second\n");
    assert.match(ds.source, /\*\.txt \(4 files\) \(val: .*b\.txt\)$/);
  });
});

Deno.test("loadText(): missing path, empty file, folder without .txt give one-line ConfigErrors", () => {
  withTmp((dir) => {
    throwsConfig(
      () => loadText(join(dir, "nope.txt")),
      /^--data: no such file or folder: .*nope\.txt/,
    );
    Deno.writeTextFileSync(join(dir, "empty.txt"), "");
    throwsConfig(() => loadText(join(dir, "empty.txt")), /^--data: file is empty: .*empty\.txt$/);
    Deno.mkdirSync(join(dir, "d"));
    Deno.writeTextFileSync(join(dir, "d", "x.md"), "text");
    throwsConfig(() => loadText(join(dir, "d")), /^--data: folder has no \.txt files: .*d$/);
    Deno.writeTextFileSync(join(dir, "d", "y.txt"), "");
    throwsConfig(() => loadText(join(dir, "d")), /^--data: every \.txt file in .*d is empty$/);
    Deno.writeTextFileSync(join(dir, "one.txt"), "x");
    throwsConfig(() => loadText(join(dir, "one.txt")), /only 1 tokens, too few to keep 1/);
    Deno.writeTextFileSync(join(dir, "ok.txt"), "enough text");
    throwsConfig(
      () => loadText(join(dir, "ok.txt"), { val: join(dir, "missing") }),
      /^--val: no such file or folder/,
    );
    throwsConfig(() => loadDataset({ val: join(dir, "ok.txt") }), /^--val needs --data/);
  });
});

Deno.test("loadDataset(): the Brown Corpus by default, as the UTF-8 bytes of loadBrown()", () => {
  const ds = loadDataset();
  assert.equal(ds, loadBrownDataset());
  assert.equal(ds.source, BROWN_SOURCE);
  const b = loadBrown();
  assert.equal(new TextDecoder().decode(ds.val), b.val);
  assert.equal(ds.train.length, enc(b.train).length);
  // English text: the context-free byte entropy is around 4.4 bits, far below 8.
  const h = unigramEntropyBits(ds.train);
  assert.ok(h > 4 && h < 5, `unigram entropy ${h}`);
});

Deno.test("BatchSampler: fewer tokens than ctx + 1 is a ConfigError naming both numbers", () => {
  throwsConfig(
    () => new BatchSampler(iota(8), { batch: 2, ctx: 8, seed: 1 }),
    /^Training data has 8 tokens, fewer than one batch window of ctx \+ 1 = 9: give more text or a smaller --ctx$/,
  );
  throwsConfig(() => requireWindow(iota(3), 3, "--data x.txt"), /^--data x\.txt has 3 tokens/);
  throwsConfig(() => new BatchSampler(iota(20), { batch: 0, ctx: 4, seed: 1 }), /batch must be/);
  throwsConfig(() => new BatchSampler(iota(20), { batch: 2, ctx: 1.5, seed: 1 }), /ctx must be/);
  // Exactly ctx + 1 tokens: one possible window, always drawn.
  const s = new BatchSampler(iota(9), { batch: 3, ctx: 8, seed: 1 });
  const { x, y } = s.next();
  for (let b = 0; b < 3; b++) {
    assert.deepEqual([...x.subarray(b * 8, b * 8 + 8)], [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual([...y.subarray(b * 8, b * 8 + 8)], [1, 2, 3, 4, 5, 6, 7, 8]);
  }
});

Deno.test("BatchSampler: rows are windows of the data, y is x shifted, every start reachable", () => {
  const n = 40, ctx = 7, B = 5;
  const tokens = iota(n);
  const s = new BatchSampler(tokens, { batch: B, ctx, seed: 3 });
  const seen = new Set<number>();
  for (let i = 0; i < 60; i++) {
    const { x, y } = s.next();
    assert.equal(x.length, B * ctx);
    assert.ok(x instanceof Uint32Array && y instanceof Uint32Array);
    for (let b = 0; b < B; b++) {
      const start = x[b * ctx];
      assert.ok(start + ctx + 1 <= n, `window at ${start} runs past the end`);
      for (let t = 0; t < ctx; t++) {
        assert.equal(x[b * ctx + t], tokens[start + t]);
        assert.equal(y[b * ctx + t], tokens[start + t + 1]);
      }
      seen.add(start);
    }
  }
  assert.equal(s.draws, 60);
  // 300 draws over 33 starts: each start (incl. the last, n - ctx - 1) turns up.
  assert.deepEqual([...seen].sort((a, b) => a - b), Array.from({ length: n - ctx }, (_, i) => i));
});

Deno.test("BatchSampler: same seed gives the same batches, another seed different ones", () => {
  const tokens = new Uint8Array(new Rng(9).uniformArray(5000, 0, 256).map(Math.floor));
  const draw = (seed: number) => {
    const s = new BatchSampler(tokens, { batch: 4, ctx: 16, seed });
    return Array.from({ length: 5 }, () => s.next());
  };
  assert.deepEqual(draw(42), draw(42));
  assert.notDeepEqual(draw(42)[0].x, draw(43)[0].x);
});

Deno.test("BatchSampler: resume from a JSON-saved state equals the uninterrupted run", () => {
  const tokens = new Uint8Array(new Rng(1).uniformArray(3000, 0, 256).map(Math.floor));
  const opts = { batch: 3, ctx: 10 };
  const full = new BatchSampler(tokens, { ...opts, seed: 7 });
  const ref = Array.from({ length: 9 }, () => full.next());

  const first = new BatchSampler(tokens, { ...opts, seed: 7 });
  for (let i = 0; i < 4; i++) assert.deepEqual(first.next(), ref[i]);
  const saved: SamplerState = JSON.parse(JSON.stringify(first.state()));
  assert.equal(saved.draws, 4);
  const resumed = BatchSampler.fromState(tokens, opts, saved);
  assert.equal(resumed.draws, 4);
  for (let i = 4; i < 9; i++) assert.deepEqual(resumed.next(), ref[i], `batch ${i}`);
  assert.deepEqual(resumed.state(), full.state());

  // next(out) fills the given arrays and draws the same batch.
  const again = BatchSampler.fromState(tokens, opts, saved);
  const out = { x: new Uint32Array(30), y: new Uint32Array(30) };
  const got = again.next(out);
  assert.equal(got.x, out.x);
  assert.deepEqual(got, ref[4]);
});

Deno.test("BatchSampler.fromState(): other data, batch or ctx, or a bad state, are ConfigErrors", () => {
  const tokens = iota(100);
  const st = new BatchSampler(tokens, { batch: 2, ctx: 8, seed: 1 }).state();
  throwsConfig(
    () => BatchSampler.fromState(iota(99), { batch: 2, ctx: 8 }, st),
    /^Cannot resume the data order: data length \(tokens\) is 99 but the checkpoint was saved with 100/,
  );
  throwsConfig(() => BatchSampler.fromState(tokens, { batch: 4, ctx: 8 }, st), /batch size is 4/);
  throwsConfig(() => BatchSampler.fromState(tokens, { batch: 2, ctx: 9 }, st), /ctx is 9/);
  throwsConfig(
    () => BatchSampler.fromState(tokens, { batch: 2, ctx: 8 }, { ...st, rng: [0, 0, 0, 0] }),
    /bad sampler state/,
  );
  throwsConfig(
    () => BatchSampler.fromState(tokens, { batch: 2, ctx: 8 }, { ...st, draws: -1 }),
    /bad sampler state/,
  );
});

Deno.test("evalWindows(): targets cover every token but the first exactly once", () => {
  for (
    const [n, ctx] of [[2, 1], [2, 5], [10, 3], [10, 9], [11, 5], [64, 8], [65, 8], [1000, 37]]
  ) {
    const ws = evalWindows({ length: n }, ctx);
    const hits = new Uint8Array(n);
    ws.forEach((w, i) => {
      assert.equal(w.start, i * ctx, `n ${n} ctx ${ctx}: consecutive windows`);
      assert.ok(w.scored >= 1 && w.scored <= ctx);
      if (i < ws.length - 1) assert.equal(w.scored, ctx, "only the last window is shorter");
      for (let t = 1; t <= w.scored; t++) hits[w.start + t]++;
    });
    assert.equal(hits[0], 0, "the first token is context only");
    for (let i = 1; i < n; i++) assert.equal(hits[i], 1, `n ${n} ctx ${ctx}: token ${i}`);
    assert.equal(ws.length, Math.ceil((n - 1) / ctx));
  }
  throwsConfig(() => evalWindows({ length: 1 }, 4), /^Eval data has 1 token: need at least 2/);
  throwsConfig(() => evalWindows({ length: 10 }, 0), /ctx must be a positive integer/);
});

Deno.test("packEvalBatch(): padded rows match the windows, mask counts the scored targets", () => {
  const tokens = iota(23);
  const ws = evalWindows(tokens, 8); // starts 0, 8, 16; the last scores 6
  const b = packEvalBatch(tokens, ws, 8);
  assert.equal(b.scored, 22);
  assert.equal(b.mask.reduce((a, v) => a + v, 0), 22);
  assert.deepEqual([...b.x.subarray(16, 24)], [16, 17, 18, 19, 20, 21, 0, 0]);
  assert.deepEqual([...b.y.subarray(16, 24)], [17, 18, 19, 20, 21, 22, 0, 0]);
  assert.deepEqual([...b.mask.subarray(16, 24)], [1, 1, 1, 1, 1, 1, 0, 0]);
  assert.deepEqual([...b.y.subarray(0, 8)], [1, 2, 3, 4, 5, 6, 7, 8]);
  throwsConfig(() => packEvalBatch(tokens, [{ start: 20, scored: 5 }], 8), /does not fit/);
});

Deno.test("unigramEntropyBits(): exact values on known distributions", () => {
  assert.equal(unigramEntropyBits(iota(256)), 8);
  assert.equal(unigramEntropyBits(new Uint8Array(50).fill(7)), 0);
  assert.equal(unigramEntropyBits(enc("abab")), 1);
  assert.ok(Math.abs(unigramEntropyBits(enc("aabc")) - 1.5) < 1e-12);
  assert.equal(unigramEntropyBits(new Uint8Array(0)), 0);
  throwsConfig(() => unigramEntropyBits([1, 256]), /token 256 at index 1 is not a byte/);
});

Deno.test("windowGroups() batches full windows and puts the short last one alone", () => {
  const ws = evalWindows({ length: 8 * 5 + 3 }, 8); // 5 full windows, then one of 2
  const groups = windowGroups(ws, 8, 2);
  assert.deepEqual(groups.map((g) => g.map((w) => w.scored)), [[8, 8], [8, 8], [8], [2]]);
  assert.deepEqual(groups.flat(), ws);
  assert.deepEqual(windowGroups(evalWindows({ length: 17 }, 8), 8, 4).map((g) => g.length), [2]);
});
