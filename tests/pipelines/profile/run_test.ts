/**
 * `runProfile()` in process:
 * - statistics of a hand-made checkpoint whose layer 0 has zero c_fc rows
 *   (each neuron's activation is relu(bias), the same on every token, so
 *   every number is known exactly) and whose layer 1 has forced dead and
 *   always-on neurons among random ones (checked exactly against a float64
 *   host computation from activations captured with a direct forward over
 *   the same windows and batch shapes);
 * - independence of the chunking (bit-identical) and of the batch size
 *   (tolerance 2/d_ff on the shares: a batch change may flip a sign at 0);
 * - pattern similarity: the same checkpoint twice gives ARI 1 and overlap
 *   1 exactly; a copy with c_fc rows (with their bias entries and c_proj
 *   columns) shuffled computes the same function, fires the same neurons
 *   at the shuffled positions, and its partitions agree only by chance:
 *   |ARI| < 0.1 per layer (128 neurons, 8 experts: a chance ARI has a
 *   spread of about 0.01); an MoE copy is profiled in original neuron
 *   order, so against its source it gives ARI 1 and overlap 1;
 * - step order, and bad input (one-line errors, nothing written).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  f32Data,
  type HostTensor,
  readCheckpoint,
  writeCheckpoint,
} from "../../../core/checkpoint.ts";
import { trackedPartition } from "../../../core/moe/stability.ts";
import { evalWindows } from "../../../core/data.ts";
import { CheckpointError, ConfigError } from "../../../core/errors.ts";
import type { GPTConfig } from "../../../core/nn/config.ts";
import { loadGPT } from "../../../core/nn/gpt_checkpoint.ts";
import { Rng } from "../../../core/rng.ts";
import { keep, tidy } from "../../../core/scope.ts";
import { noGrad } from "../../../core/tape.ts";
import { readAll, type Tensor, tensor } from "../../../core/tensor.ts";
import {
  DEFAULT_PROFILE_CONFIG,
  HIST_BINS,
  type LayerProfile,
  loadProbeTokens,
  npyBytes,
  type ProfileConfig,
  runProfile,
} from "../../../pipelines/profile/run.ts";
import { setupGpu } from "../../_helpers.ts";
import { listDir, sampleText, TINY_CONFIG, writeTinyCheckpoint } from "../_tiny_checkpoint.ts";
import { scratchDir } from "../_scratch.ts";

Deno.env.set("SSD_NO_AUTOTUNE", "1");
await setupGpu();
const dir = await scratchDir("ssd_profile_");

/** Two layers so that per-layer results cannot be mixed up; ctx 8 so windows are cheap. */
const CONFIG: GPTConfig = { ...TINY_CONFIG, n_layer: 2, d_ff: 32 };
/** Probe text: its validation part (last 5%) holds 1000 tokens. */
const text = join(dir, "text.txt");
await Deno.writeTextFile(text, sampleText(20000));
const PROBE = 300; // 37 full windows of 8 and a short one of 4

function cfg(checkpoints: string[], over: Partial<ProfileConfig> = {}): ProfileConfig {
  return {
    ...DEFAULT_PROFILE_CONFIG,
    checkpoints,
    data: text,
    tokens: PROBE,
    experts: 4,
    ...over,
  };
}

type Tensors = Map<string, HostTensor>;

/** Copies checkpoint `src` to `dst` with its tensors (and metadata) edited by `edit`. */
async function rewrite(
  src: string,
  dst: string,
  edit: (t: Tensors, meta: Record<string, string>) => void,
): Promise<void> {
  const ck = await readCheckpoint(src);
  const meta = { ...ck.metadata };
  edit(ck.tensors, meta);
  await writeCheckpoint(dst, { tensors: ck.tensors, metadata: meta });
}

function f32(t: Tensors, name: string): Float32Array {
  return t.get(name)!.data as Float32Array;
}

// Layer 0: zero c_fc rows, bias -1 on neurons 0..9 (dead), +0.5 on 10..31 (always on).
// Layer 1: random rows; bias -100 on 0..4 (dead), +100 on 5..7 (always on): |w·x| < 10 here.
const handMade = join(dir, "hand.safetensors");
await writeTinyCheckpoint(join(dir, "hand_src.safetensors"), { config: CONFIG, seed: 3 });
await rewrite(join(dir, "hand_src.safetensors"), handMade, (t) => {
  f32(t, "transformer.h.0.mlp.c_fc.weight").fill(0);
  const b0 = f32(t, "transformer.h.0.mlp.c_fc.bias");
  b0.fill(0.5);
  b0.fill(-1, 0, 10);
  const b1 = f32(t, "transformer.h.1.mlp.c_fc.bias");
  b1.fill(-100, 0, 5);
  b1.fill(100, 5, 8);
});

/** Every layer's activations (N, d_ff) over the probe, one window per forward (batch 1). */
async function directActs(path: string, tokens: Uint8Array): Promise<Float32Array[]> {
  const { model } = await loadGPT(path);
  try {
    const { ctx, n_layer: L, d_ff } = model.config;
    const out = Array.from({ length: L }, () => new Float32Array(tokens.length * d_ff));
    for (const w of evalWindows({ length: tokens.length + 1 }, ctx)) {
      const caught: Tensor[] = [];
      noGrad(() =>
        tidy(() => {
          const x = tensor(tokens.subarray(w.start, w.start + w.scored), [1, w.scored], {
            dtype: "u32",
          });
          model.forward(x, undefined, { probe: (a) => caught.push(keep(a)) });
        })
      );
      const host = await readAll(caught);
      caught.forEach((t) => t.release());
      host.forEach((a, l) => out[l].set(a, w.start * d_ff));
    }
    return out;
  } finally {
    model.release();
  }
}

/** Float64 statistics of one layer's (N, d_ff) activations, as the report defines them. */
function refStats(a: Float32Array, n: number, dff: number) {
  const perToken = new Float64Array(n);
  const fires = new Float64Array(dff);
  for (let t = 0; t < n; t++) {
    for (let j = 0; j < dff; j++) {
      if (a[t * dff + j] > 0) {
        perToken[t] += 1 / dff;
        fires[j]++;
      }
    }
  }
  const mean = perToken.reduce((s, v) => s + v, 0) / n;
  const std = Math.sqrt(perToken.reduce((s, v) => s + (v - mean) ** 2, 0) / n);
  const sorted = Float64Array.from(perToken).sort();
  const q = (p: number) => {
    const pos = p * (n - 1);
    const lo = Math.floor(pos);
    return sorted[lo] + (sorted[Math.min(n - 1, lo + 1)] - sorted[lo]) * (pos - lo);
  };
  const histogram = new Array(HIST_BINS).fill(0);
  for (const f of fires) histogram[Math.min(HIST_BINS - 1, Math.floor((f / n) * HIST_BINS))]++;
  return {
    act_ratio: mean,
    act_ratio_std: std,
    act_ratio_p10: q(0.1),
    act_ratio_p90: q(0.9),
    dead: fires.filter((f) => f === 0).length / dff,
    always_on: fires.filter((f) => f === n).length / dff,
    histogram,
    firing: Float32Array.from(fires, (f) => f / n),
  };
}

/** A layer's activation statistics without the k-means fields (which differ by start). */
function actStats(l: LayerProfile): Omit<LayerProfile, "kmeans_inertia" | "kmeans_start"> {
  const { kmeans_inertia: _i, kmeans_start: _s, ...rest } = l;
  return rest;
}

/** Reads a .npy written by `npyBytes` back: shape and data. */
function readNpy(
  bytes: Uint8Array,
): { descr: string; shape: number[]; data: Float32Array | Int32Array } {
  assert.deepEqual([...bytes.subarray(0, 8)], [0x93, 78, 85, 77, 80, 89, 1, 0]);
  const len = bytes[8] | (bytes[9] << 8);
  assert.equal((10 + len) % 64, 0, "npy data is 64-byte aligned");
  const header = new TextDecoder().decode(bytes.subarray(10, 10 + len));
  const descr = /'descr': '([^']+)'/.exec(header)![1];
  const shape = /'shape': \(([^)]*)\)/.exec(header)![1].split(",").filter((s) => s.trim())
    .map(Number);
  const body = bytes.slice(10 + len).buffer;
  return { descr, shape, data: descr === "<f4" ? new Float32Array(body) : new Int32Array(body) };
}

Deno.test("runProfile() gives the exact statistics of a hand-made checkpoint", async () => {
  const r = await runProfile(cfg([handMade], { batch: 1 }));
  assert.equal(r.tokens, PROBE);
  assert.equal(r.ctx, CONFIG.ctx);
  assert.equal(r.checkpoints.length, 1);
  assert.deepEqual(r.similarity, [], "one checkpoint: no pairs");
  const [l0, l1] = r.checkpoints[0].layers;
  // Layer 0: every token fires neurons 10..31 and nothing else.
  assert.equal(l0.act_ratio, 22 / 32);
  assert.equal(l0.act_ratio_std, 0);
  assert.equal(l0.act_ratio_p10, 22 / 32);
  assert.equal(l0.act_ratio_p90, 22 / 32);
  assert.equal(l0.dead, 10 / 32);
  assert.equal(l0.always_on, 22 / 32);
  assert.deepEqual(l0.histogram, [10, 0, 0, 0, 0, 0, 0, 0, 0, 22]);
  assert.equal(l0.kmeans_inertia, null);
  assert.equal(l0.kmeans_start, null);
  // Layer 1 against the float64 reference on the same activations.
  const { tokens } = loadProbeTokens(text, PROBE);
  const acts = await directActs(handMade, tokens);
  const want = refStats(acts[1], PROBE, 32);
  for (const k of ["act_ratio", "act_ratio_std", "act_ratio_p10", "act_ratio_p90"] as const) {
    assert.ok(Math.abs(l1[k] - want[k]) < 1e-12, `${k}: ${l1[k]} vs ${want[k]}`);
  }
  assert.equal(l1.dead, want.dead);
  assert.equal(l1.always_on, want.always_on);
  assert.deepEqual(l1.histogram, want.histogram);
  assert.ok(l1.dead >= 5 / 32 && l1.always_on >= 3 / 32, "the forced neurons are counted");
  assert.ok(l1.act_ratio > 3 / 32 && l1.act_ratio < 27 / 32, "the random neurons fire sometimes");
  assert.equal(l1.histogram.reduce((a, b) => a + b, 0), 32);
  assert.ok(Math.abs(r.checkpoints[0].act_ratio - (l0.act_ratio + l1.act_ratio) / 2) < 1e-15);
});

Deno.test("runProfile() does not depend on the chunking (exactly) or the batch size", async () => {
  const one = await runProfile(cfg([handMade], { batch: 3 }));
  // 2 windows per host read: 20 chunks, the last holding the short window.
  const small = await runProfile(cfg([handMade], { batch: 3, chunk_bytes: 2 * 8 * 32 * 2 * 4 }));
  assert.deepEqual(small.checkpoints, one.checkpoints);
  const big = await runProfile(cfg([handMade], { batch: 16 }));
  big.checkpoints[0].layers.forEach((l, i) => {
    const o = one.checkpoints[0].layers[i];
    for (const k of ["act_ratio", "act_ratio_p10", "act_ratio_p90", "dead", "always_on"] as const) {
      assert.ok(Math.abs(l[k] - o[k]) <= 2 / 32, `layer ${i} ${k}: ${l[k]} vs ${o[k]}`);
    }
  });
});

// Pattern similarity on a wider model: 128 neurons, 8 experts of 16.
const WIDE: GPTConfig = { ...CONFIG, d_ff: 128 };
const base = join(dir, "base.safetensors");
await writeTinyCheckpoint(base, { config: WIDE, seed: 11, train: { step: 100 } });
const perms = Array.from({ length: WIDE.n_layer }, (_, l) => {
  const p = Array.from({ length: WIDE.d_ff }, (_, i) => i);
  new Rng(100 + l).shuffle(p);
  return p; // neuron i goes to position p[i]
});

/** Moves neuron i of every layer to position perms[l][i]: rows of c_fc, bias, columns of c_proj. */
function permuteFfn(t: Tensors): void {
  const { d_ff: F, d_model: C } = WIDE;
  perms.forEach((p, l) => {
    const h = `transformer.h.${l}.mlp.`;
    const w = f32(t, h + "c_fc.weight").slice();
    const b = f32(t, h + "c_fc.bias").slice();
    const proj = f32(t, h + "c_proj.weight").slice();
    const [wOut, bOut, pOut] = [
      f32(t, h + "c_fc.weight"),
      f32(t, h + "c_fc.bias"),
      f32(t, h + "c_proj.weight"),
    ];
    for (let i = 0; i < F; i++) {
      wOut.set(w.subarray(i * C, (i + 1) * C), p[i] * C);
      bOut[p[i]] = b[i];
      for (let r = 0; r < C; r++) pOut[r * F + p[i]] = proj[r * F + i];
    }
  });
}

const shuffled = join(dir, "shuffled.safetensors");
await rewrite(base, shuffled, (t, meta) => {
  permuteFfn(t);
  meta["ssd.train"] = JSON.stringify({ step: 200 });
});

Deno.test("runProfile() of the same checkpoint twice: ARI 1 and overlap 1 in every layer", async () => {
  const r = await runProfile(cfg([base, base], { experts: 8 }));
  assert.equal(r.top_k, 2, "default k = E/4");
  assert.equal(r.similarity.length, 1);
  const s = r.similarity[0];
  assert.deepEqual([s.from, s.to], [0, 1]);
  assert.deepEqual(s.ari, [1, 1]);
  assert.deepEqual(s.overlap, [1, 1]);
  assert.equal(s.ari_mean, 1);
  assert.equal(s.overlap_mean, 1);
  assert.deepEqual(r.checkpoints[0].layers.map(actStats), r.checkpoints[1].layers.map(actStats));
  for (const l of r.checkpoints[0].layers) {
    assert.ok(l.kmeans_inertia! > 0);
    assert.equal(l.kmeans_start, "fresh", "the first checkpoint has nothing to start from");
  }
  // The second partition starts from the first one's, which wins the tie with a fresh start.
  for (const l of r.checkpoints[1].layers) assert.equal(l.kmeans_start, "warm");
});

Deno.test("runProfile() of a checkpoint and its neuron-shuffled copy: ARI near 0", async () => {
  const out = join(dir, "out_shuffled");
  const r = await runProfile(cfg([base, shuffled], { experts: 8, top_k: 2, out }));
  const s = r.similarity[0];
  for (const [l, ari] of s.ari.entries()) {
    assert.ok(Math.abs(ari) < 0.1, `layer ${l}: ARI ${ari}, expected about 0`);
    assert.ok(s.overlap[l] < 0.8, `layer ${l}: overlap ${s.overlap[l]}, expected well below 1`);
  }
  // The same function: the same neurons fire, at their new positions (layer 0 bit for bit;
  // layer 1's input went through c_proj summed in another order).
  const files = r.checkpoints.map((c) => c.files!);
  const fa = readNpy(await Deno.readFile(join(out, files[0].firing)));
  const fb = readNpy(await Deno.readFile(join(out, files[1].firing)));
  assert.deepEqual(fa.shape, [2, 128]);
  assert.equal(fa.descr, "<f4");
  for (let l = 0; l < 2; l++) {
    for (let i = 0; i < 128; i++) {
      const a = fa.data[l * 128 + i];
      const b = fb.data[l * 128 + perms[l][i]];
      if (l === 0) assert.equal(b, a, `layer 0 neuron ${i}`);
      else assert.ok(Math.abs(a - b) <= 2 / PROBE, `layer 1 neuron ${i}: ${a} vs ${b}`);
    }
  }
  const la = readNpy(await Deno.readFile(join(out, files[0].experts!)));
  assert.equal(la.descr, "<i4");
  assert.deepEqual(la.shape, [2, 128]);
  const counts = new Array(8).fill(0);
  for (let i = 0; i < 128; i++) counts[la.data[i]]++;
  assert.deepEqual(counts, new Array(8).fill(16), "balanced partition");
  const json = JSON.parse(await Deno.readTextFile(join(out, "profile.json")));
  assert.deepEqual(json.similarity, JSON.parse(JSON.stringify(r.similarity)));
  assert.deepEqual((await listDir(out)).sort(), [
    "00_base.experts.npy",
    "00_base.firing.npy",
    "01_shuffled.experts.npy",
    "01_shuffled.firing.npy",
    "profile.json",
  ]);
});

/** Per token, the k experts of largest mass (ties to the lower expert), as sets. */
function refOracle(mass: Float64Array, n: number, E: number, k: number): Set<number>[] {
  return Array.from({ length: n }, (_, t) => {
    const order = Array.from({ length: E }, (_, e) => e);
    order.sort((x, y) => mass[t * E + y] - mass[t * E + x] || x - y);
    return new Set(order.slice(0, k));
  });
}

/** Adjusted Rand index from the contingency table (Hubert and Arabie). */
function refAri(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  const c2 = (x: number) => (x * (x - 1)) / 2;
  const cells = new Map<string, number>();
  const rows = new Map<number, number>();
  const cols = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    cells.set(`${a[i]} ${b[i]}`, (cells.get(`${a[i]} ${b[i]}`) ?? 0) + 1);
    rows.set(a[i], (rows.get(a[i]) ?? 0) + 1);
    cols.set(b[i], (cols.get(b[i]) ?? 0) + 1);
  }
  const sum = (m: Map<unknown, number>) => [...m.values()].reduce((s, v) => s + c2(v), 0);
  const [idx, sa, sb] = [sum(cells), sum(rows), sum(cols)];
  const expected = (sa * sb) / c2(n);
  return (idx - expected) / ((sa + sb) / 2 - expected);
}

Deno.test("runProfile() similarity follows its definition on two unrelated checkpoints", async () => {
  // Overlap: A's partition groups both checkpoints' activations; per token, the share of A's
  // oracle top-k experts that are also B's; mean over tokens. Recomputed here from the
  // activations of a direct forward and the labels written to --out.
  const other = join(dir, "other_seed.safetensors");
  await writeTinyCheckpoint(other, { config: WIDE, seed: 12, train: { step: 300 } });
  const out = join(dir, "out_def");
  const k = 3;
  const r = await runProfile(cfg([base, other], { experts: 8, top_k: k, batch: 1, out }));
  const files = r.checkpoints.map((c) => c.files!);
  const labA = readNpy(await Deno.readFile(join(out, files[0].experts!))).data;
  const labB = readNpy(await Deno.readFile(join(out, files[1].experts!))).data;
  const { tokens } = loadProbeTokens(text, PROBE);
  const [actA, actB] = [await directActs(base, tokens), await directActs(other, tokens)];
  const F = WIDE.d_ff;
  for (let l = 0; l < WIDE.n_layer; l++) {
    const lab = labA.subarray(l * F, (l + 1) * F);
    const mass = (act: Float32Array) => {
      const m = new Float64Array(PROBE * 8);
      for (let t = 0; t < PROBE; t++) {
        for (let j = 0; j < F; j++) m[t * 8 + lab[j]] += Math.abs(act[t * F + j]);
      }
      return m;
    };
    const sa = refOracle(mass(actA[l]), PROBE, 8, k);
    const sb = refOracle(mass(actB[l]), PROBE, 8, k);
    let total = 0;
    for (let t = 0; t < PROBE; t++) total += [...sa[t]].filter((e) => sb[t].has(e)).length / k;
    const want = total / PROBE;
    const got = r.similarity[0].overlap[l];
    assert.ok(Math.abs(got - want) < 1e-12, `layer ${l}: overlap ${got} vs ${want}`);
    const ari = refAri(lab, labB.subarray(l * F, (l + 1) * F));
    assert.ok(Math.abs(r.similarity[0].ari[l] - ari) < 1e-12, `layer ${l}: ARI`);
    assert.ok(got > 0 && got < 1, `layer ${l}: overlap ${got} strictly between 0 and 1`);
  }
});

Deno.test("runProfile() takes an MoE checkpoint in original neuron order", async () => {
  const moe = join(dir, "moe.safetensors");
  await rewrite(base, moe, (t, meta) => {
    permuteFfn(t);
    for (let l = 0; l < WIDE.n_layer; l++) {
      t.set(`transformer.h.${l}.mlp.router.weight`, {
        dtype: "F32",
        shape: [8, WIDE.d_model],
        data: new Float32Array(8 * WIDE.d_model),
      });
    }
    meta["ssd.moe"] = JSON.stringify({
      experts: 8,
      top_k: 2,
      router: "centroid",
      method: "param",
      perms,
    });
  });
  const r = await runProfile(cfg([base, moe], { experts: 8 }));
  assert.equal(r.checkpoints[1].moe, true);
  assert.deepEqual(r.similarity[0].ari, [1, 1]);
  for (const o of r.similarity[0].overlap) assert.ok(o > 0.99, `overlap ${o}`);
  assert.deepEqual(actStats(r.checkpoints[1].layers[0]), actStats(r.checkpoints[0].layers[0]));
});

Deno.test("runProfile() orders checkpoints by training step, not as given", async () => {
  const r = await runProfile(cfg([shuffled, base, shuffled], { experts: 8, tokens: 40 }));
  assert.deepEqual(r.checkpoints.map((c) => c.step), [100, 200, 200]);
  assert.deepEqual(r.checkpoints.map((c) => c.path), [base, shuffled, shuffled]);
  assert.equal(r.similarity.length, 2);
  assert.deepEqual(r.similarity[1].ari, [1, 1], "equal steps: the same file twice");
});

Deno.test("runProfile() partitions by the shared warm-vs-fresh rule (trackedPartition)", async () => {
  const other = join(dir, "rule_other.safetensors");
  await writeTinyCheckpoint(other, { config: WIDE, seed: 29, train: { step: 300 } });
  const out = join(dir, "rule_out");
  const r = await runProfile(cfg([base, other], { experts: 8, out }));
  const files = r.checkpoints.map((c) => c.files!);
  const saved = files.map((f) => readNpy(Deno.readFileSync(join(out, f.experts!))).data);
  let prev: Uint32Array[] | undefined;
  for (const [ci, path] of [base, other].entries()) {
    const ck = await readCheckpoint(path);
    const next: Uint32Array[] = [];
    for (let l = 0; l < WIDE.n_layer; l++) {
      const name = `transformer.h.${l}.mlp.c_fc.weight`;
      const rows = f32Data(ck.tensors.get(name)!, name);
      const want = await trackedPartition(rows, 128, WIDE.d_model, 8, {
        warm: prev?.[l],
        iters: DEFAULT_PROFILE_CONFIG.iters,
        seed: DEFAULT_PROFILE_CONFIG.seed,
      });
      const layer = r.checkpoints[ci].layers[l];
      assert.equal(layer.kmeans_start, want.start, `checkpoint ${ci} layer ${l}`);
      assert.equal(layer.kmeans_inertia, want.inertia);
      assert.deepEqual([...saved[ci].subarray(l * 128, (l + 1) * 128)], [...want.labels]);
      next.push(want.labels);
    }
    prev = next;
  }
});

Deno.test("npyBytes() writes NumPy 1.0 headers for 1-D and 2-D arrays", () => {
  const one = readNpy(npyBytes(Int32Array.from([1, -2, 3]), [3]));
  assert.deepEqual(one.shape, [3]);
  assert.deepEqual([...one.data], [1, -2, 3]);
  const two = readNpy(npyBytes(Float32Array.from([0.5, 1, 2, 4, 8, 16]), [2, 3]));
  assert.deepEqual(two.shape, [2, 3]);
  assert.deepEqual([...two.data], [0.5, 1, 2, 4, 8, 16]);
});

Deno.test("runProfile(): bad input throws one-line errors and writes nothing", async () => {
  const out = join(dir, "never");
  const other = join(dir, "other.safetensors");
  await writeTinyCheckpoint(other, { config: { ...WIDE, d_ff: 64 } });
  const cases: [
    Partial<ProfileConfig> & { checkpoints: string[] },
    typeof CheckpointError | typeof ConfigError,
    RegExp,
  ][] = [
    [{ checkpoints: [base, other] }, CheckpointError, /model configs differ \(d_ff 128 vs 64\)/],
    [{ checkpoints: [join(dir, "missing.safetensors")] }, CheckpointError, /not found/],
    [
      { checkpoints: [base, base], experts: 5 },
      ConfigError,
      /--experts 5 does not divide d_ff 128/,
    ],
    [
      { checkpoints: [base], experts: 7 },
      ConfigError,
      /--experts 7 does not divide d_ff 128/,
    ],
    [{ checkpoints: [base], experts: 8, top_k: 9 }, ConfigError, /--top-k must be .* 1\.\.8/],
    [{ checkpoints: [base], tokens: 0 }, ConfigError, /--tokens must be a positive integer/],
    [{ checkpoints: [base], tokens: 1001 }, ConfigError, /has only 1000 tokens/],
    [{ checkpoints: [] }, ConfigError, /at least one checkpoint/],
    [{ checkpoints: [base], out: text }, ConfigError, /exists and is not a folder/],
  ];
  for (const [over, cls, msg] of cases) {
    await assert.rejects(() => runProfile(cfg(over.checkpoints, { out, ...over })), (e: Error) => {
      assert.ok(e instanceof cls, `${e.name}: ${e.message}`);
      assert.match(e.message, msg);
      assert.doesNotMatch(e.message, /\n/);
      return true;
    });
  }
  await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound);
});
