/**
 * `pipelines/train/limits.ts`: a batch or context whose buffers exceed the
 * adapter's per-buffer limit is refused before any work, naming the limit
 * and what fits; the tiny preset fits WebGPU's default limits.
 */
import assert from "node:assert/strict";
import { ConfigError } from "../../../core/errors.ts";
import { resolveTrainConfig } from "../../../pipelines/train/config.ts";
import { checkBufferLimits } from "../../../pipelines/train/limits.ts";

// WebGPU's default limits (128 MiB per binding, 256 MiB per buffer).
const LIMITS = { maxStorageBufferBindingSize: 128 << 20, maxBufferSize: 256 << 20 };

Deno.test("checkBufferLimits() passes the presets at WebGPU's default limits", async () => {
  checkBufferLimits(await resolveTrainConfig({ preset: "tiny" }), LIMITS);
  checkBufferLimits(await resolveTrainConfig({}), LIMITS);
});

Deno.test("checkBufferLimits() names the limit and the largest batch that fits", async () => {
  const c = await resolveTrainConfig({ preset: "tiny", batch_size: 100_000_000 });
  assert.throws(
    () => checkBufferLimits(c, LIMITS),
    (e: Error) =>
      e instanceof ConfigError &&
      /^--batch-size 100000000 with --ctx 32 needs .* for the logits .* over this adapter's maxStorageBufferBindingSize of 128\.0 MiB: --batch-size 4096 or less fits$/
        .test(e.message),
  );
  // 4096 · 32 · 256 · 4 bytes is exactly 128 MiB: it fits.
  checkBufferLimits(await resolveTrainConfig({ preset: "tiny", batch_size: 4096 }), LIMITS);
});

Deno.test("checkBufferLimits() gives the largest context when no batch fits", async () => {
  const c = await resolveTrainConfig({ preset: "tiny", ctx: 1_000_000, batch_size: 1 });
  assert.throws(
    () => checkBufferLimits(c, LIMITS),
    /no batch fits at --ctx 1000000; --ctx \d+ or less does/,
  );
  const small = { ...LIMITS, maxBufferSize: 1 << 20 };
  assert.throws(
    () => checkBufferLimits(c, small),
    /maxBufferSize of 1\.0 MiB/,
  );
});
