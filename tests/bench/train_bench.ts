/**
 * `deno task bench:train`: one training step of the reference config
 * (vocab 256, d_model 128, 4 layers, 4 heads, d_ff 512, ctx 128, batch 16)
 * in ssd and in the same model in PyTorch on the CPU (train_torch.py, run
 * with /usr/bin/python3 when Debian's python3-torch is installed), side by
 * side, with the ratio of tokens/s against the peer: PyTorch with a fast
 * BLAS. Debian's torch uses the reference BLAS (~25x slower than what users
 * have), so the bench also builds `sgemm_dnnl.c` (gcc, libdnnl2) and runs
 * torch with oneDNN's sgemm preloaded; each torch run names its BLAS and
 * threads, and a reference-BLAS run is printed but never called the peer.
 * `--json` prints one JSON document.
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

/** How PyTorch ran: its own BLAS, or oneDNN's sgemm through the shim. */
type TorchBlas = "system" | "onednn";

/**
 * Builds `sgemm_dnnl.c` (next to this file) into a temporary folder: the
 * LD_PRELOAD library that makes Debian's torch use oneDNN's sgemm. Null,
 * with the reason, when gcc or libdnnl.so.2 is missing.
 */
async function buildShim(): Promise<{ path: string } | { skipped: string }> {
  const dnnl = "/usr/lib/x86_64-linux-gnu/libdnnl.so.2";
  try {
    await Deno.stat(dnnl);
  } catch {
    return { skipped: `${dnnl} not found (apt-get install libdnnl2)` };
  }
  const src = fileURLToPath(new URL("./sgemm_dnnl.c", import.meta.url));
  const dir = await Deno.makeTempDir({ prefix: "ssd-sgemm-" });
  const path = `${dir}/libsgemm_dnnl.so`;
  try {
    const out = await new Deno.Command("gcc", {
      args: ["-O2", "-shared", "-fPIC", src, "-o", path, dnnl],
      stderr: "piped",
    }).output();
    if (!out.success) return { skipped: "gcc failed to build the oneDNN shim" };
  } catch {
    return { skipped: "gcc not found (apt-get install gcc)" };
  }
  return { path };
}

async function torchStep(steps: number, blas: TorchBlas, shim: string | null) {
  const script = fileURLToPath(new URL("./train_torch.py", import.meta.url));
  try {
    const env: Record<string, string> = shim ? { LD_PRELOAD: shim } : {};
    const out = await new Deno.Command("/usr/bin/python3", {
      args: [script, JSON.stringify({ ...REF, batch_size: B, steps })],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      const msg = new TextDecoder().decode(out.stderr).trim().split("\n").pop();
      return { blas, skipped: `torch run failed: ${msg}` };
    }
    return { blas, ...JSON.parse(new TextDecoder().decode(out.stdout)) };
  } catch {
    return { blas, skipped: "/usr/bin/python3 not found (apt-get install python3-torch)" };
  }
}

/**
 * Whether a torch run's BLAS is one users actually train with: oneDNN (the
 * shim), OpenBLAS, MKL or BLIS. Debian's default reference BLAS is ~25x
 * slower than those and is never called the peer.
 */
function isFastBlas(blasInfo: string): boolean {
  return !/reference/i.test(blasInfo) && /dnnl|openblas|mkl|blis/i.test(blasInfo);
}

const json = Deno.args.includes("--json");
const si = Deno.args.indexOf("--steps");
const steps = si >= 0 ? Number(Deno.args[si + 1]) : 10;
const ssd = await ssdStep(steps);
const shim = await buildShim();
const torchSteps = Math.min(steps, 5);
// Both PyTorch runs when the shim builds: the peer (oneDNN sgemm) and Debian's default BLAS.
const torch = [
  "path" in shim ? await torchStep(torchSteps, "onednn", shim.path) : { blas: "onednn", ...shim },
  await torchStep(torchSteps, "system", null),
];
if ("path" in shim) {
  await Deno.remove(shim.path.slice(0, shim.path.lastIndexOf("/")), { recursive: true });
}
const peer = torch.find((t) => "tokens_per_s" in t && isFastBlas(t.blas_info)) ?? null;
const ratio = peer ? ssd.tokens_per_s / peer.tokens_per_s : null;
const result = {
  config: { ...REF, batch_size: B },
  steps,
  ssd,
  torch,
  peer: peer ? { blas_info: peer.blas_info, threads: peer.threads } : null,
  ssd_vs_peer: ratio,
};
if (json) console.log(JSON.stringify(result, null, 2));
else {
  console.log(`reference config: d_model 128, 4 layers, 4 heads, d_ff 512, ctx 128, batch 16`);
  console.log(
    `ssd (${ssd.adapter}):  ${ssd.ms_per_step.toFixed(1)} ms/step  ` +
      `${Math.round(ssd.tokens_per_s)} tokens/s  (${ssd.host_waits_per_step} host wait/step)`,
  );
  for (const t of torch) {
    const what = t.blas === "onednn" ? "oneDNN sgemm via LD_PRELOAD shim" : "system BLAS";
    if ("skipped" in t) {
      console.log(`torch (${what}): skipped: ${t.skipped}`);
      continue;
    }
    const tag = isFastBlas(t.blas_info) ? "" : "  [reference BLAS: not the peer]";
    console.log(
      `torch ${t.torch} CPU (${what}, ${t.threads} threads, BLAS ${t.blas_info}):  ` +
        `${t.ms_per_step.toFixed(1)} ms/step  ${Math.round(t.tokens_per_s)} tokens/s${tag}`,
    );
  }
  if (peer && ratio !== null) {
    console.log(
      `ssd vs the peer (PyTorch, ${peer.blas_info}, ${peer.threads} threads): ` +
        `${ratio.toFixed(2)}x its tokens/s`,
    );
  } else {
    console.log("no peer: no PyTorch run with a fast BLAS (oneDNN, OpenBLAS, MKL, BLIS)");
  }
}
