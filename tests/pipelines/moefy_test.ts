import assert from "node:assert/strict";
import { join } from "node:path";
import { f32Data, readCheckpoint } from "../../core/checkpoint.ts";
import type { MoeLayout } from "../../core/nn/moe_layout.ts";
import { resolveTrainConfig } from "../../pipelines/train/config.ts";
import { runTrain } from "../../pipelines/train/run.ts";
import { reportedKs, runMoefy } from "../../pipelines/moefy.ts";
import { invertPermutation, permuteCols, permuteRows } from "../../core/moe/partition.ts";
import { runEval } from "../../pipelines/eval.ts";
import { setupGpu } from "../_helpers.ts";

Deno.env.set("SSD_NO_AUTOTUNE", "1");
await setupGpu();

// One small trained checkpoint shared by the tests (tiny preset: d_ff 128).
const dir = await Deno.makeTempDir();
const data = join(dir, "data.txt");
await Deno.writeTextFile(data, (await Deno.readTextFile("README.md")).repeat(3));
const trained = join(dir, "run", "final.safetensors");
await runTrain(
  await resolveTrainConfig({
    preset: "tiny",
    steps: 150,
    data,
    eval_every: 0,
    save_every: 0,
    out: join(dir, "run"),
  }),
);
const base = {
  checkpoint: trained,
  experts: 8,
  top_k: 2,
  method: "param" as const,
  router: "centroid" as const,
  data,
  tokens: 2048,
  eval_tokens: 4096,
  iters: 20,
  seed: 0,
};

Deno.test("reportedKs() lists E/8, E/4, E/2 and top_k once each, ascending", () => {
  assert.deepEqual(reportedKs(16, 4), [2, 4, 8]);
  assert.deepEqual(reportedKs(16, 3), [2, 3, 4, 8]);
  assert.deepEqual(reportedKs(4, 1), [1, 2]);
});

Deno.test("moefy keeps the dense model: eval with all experts equals the source's eval", async () => {
  const out = join(dir, "moe_all.safetensors");
  await runMoefy({ ...base, out });
  const dense = await runEval({ checkpoint: trained, data, batch: 16 });
  const allExperts = await runEval({ checkpoint: out, data, batch: 16, top_k: 8 });
  assert.equal(allExperts.top_k, 8);
  // Permuted neurons sum in another order: f32 rounding only.
  assert.ok(
    Math.abs(allExperts.nll - dense.nll) <= 1e-5 * dense.nll,
    `${allExperts.nll} vs ${dense.nll}`,
  );
});

Deno.test("moefy: loss falls toward dense as k grows, and coverage rises with k", async () => {
  const r = await runMoefy({ ...base, out: join(dir, "moe_k.safetensors") });
  const byK = new Map(r.moe.map((m) => [m.k, m.nll]));
  // k = E is the dense model: the report's dense loss is on the same tokens.
  // Each k no worse than the next beyond 1% (noise of a tiny model on 4k tokens).
  const tol = 0.01 * r.dense.nll;
  assert.ok(byK.get(2)! >= byK.get(4)! - tol, `k=2 ${byK.get(2)} k=4 ${byK.get(4)}`);
  assert.ok(byK.get(4)! >= r.dense.nll - tol, `k=4 ${byK.get(4)} k=8 ${r.dense.nll}`);
  for (const layer of r.layers) {
    for (let i = 1; i < layer.coverage.length; i++) {
      assert.ok(layer.coverage[i].oracle >= layer.coverage[i - 1].oracle);
    }
    for (const c of layer.coverage) assert.ok(c.router <= c.oracle + 1e-9, `router beats oracle`);
  }
});

Deno.test("un-permuting an MoE checkpoint gives the source tensors bit for bit", async () => {
  const out = join(dir, "moe_rt.safetensors");
  await runMoefy({ ...base, out, router: "mlp", method: "coact" });
  const src = await readCheckpoint(trained);
  const moe = await readCheckpoint(out);
  const layout = JSON.parse(moe.metadata["ssd.moe"]) as MoeLayout;
  const C = 32, F = 128;
  for (const [name, t] of src.tensors) {
    const got = f32Data(moe.tensors.get(name)!, name);
    const l = /h\.(\d+)\.mlp\.c_(fc|proj)/.exec(name);
    let back = got;
    if (l) {
      const inv = invertPermutation(layout.perms[Number(l[1])]);
      back = l[2] === "fc"
        ? permuteRows(got, F, name.endsWith("bias") ? 1 : C, inv)
        : name.endsWith("bias")
        ? got
        : permuteCols(got, C, F, inv);
    }
    assert.deepEqual(
      new Uint8Array(back.buffer, back.byteOffset, back.byteLength),
      new Uint8Array(
        (t.data as Float32Array).buffer,
        (t.data as Float32Array).byteOffset,
        (t.data as Float32Array).byteLength,
      ),
      name,
    );
  }
});

Deno.test("moefy rejects bad input with one clear error", async () => {
  await assert.rejects(
    runMoefy({ ...base, experts: 7, out: join(dir, "x.safetensors") }),
    /does not divide d_ff 128/,
  );
  await assert.rejects(
    runMoefy({ ...base, top_k: 0, out: join(dir, "x.safetensors") }),
    /--top-k must be in 1..8/,
  );
  await assert.rejects(
    runMoefy({ ...base, top_k: 9, out: join(dir, "x.safetensors") }),
    /--top-k must be in 1..8/,
  );
  const moe = join(dir, "moe_again.safetensors");
  await runMoefy({ ...base, out: moe });
  await assert.rejects(
    runMoefy({ ...base, checkpoint: moe, out: join(dir, "x.safetensors") }),
    /already an MoE checkpoint/,
  );
  await assert.rejects(Deno.stat(join(dir, "x.safetensors")));
});
