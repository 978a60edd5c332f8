/**
 * `deno task bench:train`: one training step of the reference config
 * (vocab 256, d_model 128, 4 layers, 4 heads, d_ff 512, ctx 128, batch 16)
 * in ssd and in the same model in PyTorch on the CPU (train_torch.py, run
 * with /usr/bin/python3 when Debian's python3-torch is installed), side by
 * side, with the ratio of tokens/s. `--json` prints one JSON document.
 * `--steps N` sets the timed steps (default 10, after 3 warm-up steps).
 */
import { GPT } from "../../core/nn/gpt.ts";
import type { GPTConfig } from "../../core/nn/config.ts";
import { AdamW } from "../../core/optim/adamw.ts";
import { gradClip } from "../../core/optim/clip.ts";
import { Rng } from "../../core/rng.ts";
import { tidyAsync } from "../../core/scope.ts";
import { backward } from "../../core/tape.ts";
import { readAll, tensor } from "../../core/tensor.ts";
import { initGpu } from "../../gpu/runtime.ts";
import { fileURLToPath } from "node:url";

const REF: GPTConfig = {
  vocab: 256,
  ctx: 128,
  d_model: 128,
  n_layer: 4,
  n_head: 4,
  d_ff: 512,
  bias: true,
  activation: "relu",
};
const B = 16;

async function ssdStep(steps: number) {
  const g = await initGpu();
  const rng = new Rng(0);
  const model = GPT.init(REF, rng);
  const params = [...model.params.values()];
  const opt = new AdamW(params, { lr: 1e-3, betas: [0.9, 0.99], weightDecay: 0.1 });
  const x = Array.from({ length: B * REF.ctx }, () => rng.int(256));
  const y = Array.from({ length: B * REF.ctx }, () => rng.int(256));
  const step = () =>
    tidyAsync(async () => {
      const out = model.forward(
        tensor(x, [B, REF.ctx], { dtype: "u32" }),
        tensor(y, [B, REF.ctx], { dtype: "u32" }),
      );
      backward(out.loss!);
      const clip = gradClip(params, 1);
      opt.step(1e-3, clip.factor);
      opt.zeroGrad();
      return (await readAll([out.loss!]))[0][0];
    });
  for (let i = 0; i < 3; i++) await step();
  const waits0 = g.recorder.stats().hostWaits;
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await step();
  const ms = (performance.now() - t0) / steps;
  const waits = (g.recorder.stats().hostWaits - waits0) / steps;
  opt.dispose();
  model.release();
  return {
    adapter: g.dev.summary.name,
    ms_per_step: ms,
    tokens_per_s: (B * REF.ctx) / (ms / 1000),
    host_waits_per_step: waits,
  };
}

async function torchStep(steps: number) {
  const script = fileURLToPath(new URL("./train_torch.py", import.meta.url));
  try {
    const out = await new Deno.Command("/usr/bin/python3", {
      args: [script, JSON.stringify({ ...REF, batch_size: B, steps })],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      const msg = new TextDecoder().decode(out.stderr).trim().split("\n").pop();
      return { skipped: `torch run failed: ${msg}` };
    }
    return JSON.parse(new TextDecoder().decode(out.stdout));
  } catch {
    return { skipped: "/usr/bin/python3 not found (apt-get install python3-torch)" };
  }
}

const json = Deno.args.includes("--json");
const si = Deno.args.indexOf("--steps");
const steps = si >= 0 ? Number(Deno.args[si + 1]) : 10;
const ssd = await ssdStep(steps);
const torch = await torchStep(Math.min(steps, 5));
const ratio = "tokens_per_s" in torch ? ssd.tokens_per_s / torch.tokens_per_s : null;
const result = { config: { ...REF, batch_size: B }, steps, ssd, torch, ssd_vs_torch: ratio };
if (json) console.log(JSON.stringify(result, null, 2));
else {
  console.log(`reference config: d_model 128, 4 layers, 4 heads, d_ff 512, ctx 128, batch 16`);
  console.log(
    `ssd (${ssd.adapter}):  ${ssd.ms_per_step.toFixed(1)} ms/step  ` +
      `${Math.round(ssd.tokens_per_s)} tokens/s  (${ssd.host_waits_per_step} host wait/step)`,
  );
  if ("skipped" in torch) console.log(`torch: skipped: ${torch.skipped}`);
  else {
    console.log(
      `torch ${torch.torch} CPU (${torch.threads} threads, BLAS ${torch.blas_info}):  ` +
        `${torch.ms_per_step.toFixed(1)} ms/step  ${Math.round(torch.tokens_per_s)} tokens/s`,
    );
    console.log(`ssd / torch tokens/s: ${ratio!.toFixed(2)}x`);
  }
}
