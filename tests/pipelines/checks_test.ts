/**
 * The shared checks of `pipelines/checks.ts` that need no checkpoint: the
 * `--top-k` / `--dense` conflict and the adapter-limit checks of generate
 * and eval (plain numbers, no GPU).
 */
import assert from "node:assert/strict";
import { ConfigError } from "../../core/errors.ts";
import {
  bindingLimit,
  checkForwardFits,
  checkGenerateFits,
  refuseTopKWithDense,
} from "../../pipelines/checks.ts";

const LIMITS = { maxStorageBufferBindingSize: 128 * 2 ** 20, maxBufferSize: 256 * 2 ** 20 };

Deno.test("refuseTopKWithDense() refuses both flags and accepts either alone", () => {
  assert.throws(
    () => refuseTopKWithDense({ checkpoint: "x", top_k: 2, dense: true }),
    (e: Error) => e instanceof ConfigError && /--top-k 2 and --dense/.test(e.message),
  );
  refuseTopKWithDense({ checkpoint: "x", top_k: 2, dense: false });
  refuseTopKWithDense({ checkpoint: "x", top_k: null, dense: true });
  refuseTopKWithDense({ checkpoint: "x" });
});

Deno.test("bindingLimit() is the smaller of the two adapter limits", () => {
  assert.deepEqual(bindingLimit(LIMITS), {
    bytes: 128 * 2 ** 20,
    name: "maxStorageBufferBindingSize",
  });
  assert.deepEqual(bindingLimit({ ...LIMITS, maxBufferSize: 2 ** 20 }), {
    bytes: 2 ** 20,
    name: "maxBufferSize",
  });
});

Deno.test("checkGenerateFits() refuses a token buffer over the limit and says what fits", () => {
  const most = 128 * 2 ** 18 - 5; // 4 bytes per token, 5 prompt tokens
  checkGenerateFits(5, most, LIMITS);
  assert.throws(
    () => checkGenerateFits(5, most + 1, LIMITS),
    (e: Error) =>
      e instanceof ConfigError &&
      e.message.includes("maxStorageBufferBindingSize of 128.0 MiB") &&
      e.message.endsWith(`give --tokens ${most} or less`),
  );
});

Deno.test("checkForwardFits() names the largest tensor of a forward and the batch that fits", () => {
  const c = { vocab: 256, d_ff: 512, d_model: 128, n_head: 4 };
  // T = 1024: (B, H, T, T) is 4·2^20 values per window, 16 MiB; 8 windows fit in 128 MiB.
  checkForwardFits("--batch", 8, 1024, c, LIMITS);
  assert.throws(
    () => checkForwardFits("--batch", 9, 1024, c, LIMITS),
    (e: Error) =>
      e instanceof ConfigError && /\(B, H, T, T\) attention/.test(e.message) &&
      e.message.endsWith("give --batch 8 or less"),
  );
});
