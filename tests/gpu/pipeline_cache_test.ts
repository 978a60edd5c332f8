/** The pipeline cache's compile errors: kernel name, line:col, source line and caret. */
import assert from "node:assert/strict";
import { compileErrorMessage } from "../../gpu/compile_error.ts";
import { GpuError } from "../../gpu/errors.ts";
import { defineKernel } from "../../gpu/kernel.ts";
import { PipelineCache } from "../../gpu/pipeline_cache.ts";
import { bindings, flatEntry } from "../../gpu/wgsl.ts";
import { setupGpu } from "../_helpers.ts";

const g = await setupGpu();

// Assigns a float to a u32: the error is at the `let` binding's name, column 7.
const BROKEN_WGSL = `
${bindings`
  params n: u32, nx: u32
  write  out: array<u32>
`}
${flatEntry(64)}
  let x: u32 = 1.5;
  out[i] = x;
}
`;

Deno.test("PipelineCache.check() reports line:col and the source line of a WGSL error", async () => {
  const line = BROKEN_WGSL.split("\n").indexOf("  let x: u32 = 1.5;") + 1;
  assert.ok(line > 1);
  const cache = new PipelineCache(g.device);
  cache.get(defineKernel("test.broken", () => BROKEN_WGSL));
  await assert.rejects(cache.check(), (e: unknown) => {
    assert.ok(e instanceof GpuError);
    const [head, source, caret] = e.message.split("\n");
    assert.match(
      head,
      new RegExp(`^Kernel test\\.broken failed to compile: ${line}:7: error: .*u32`),
    );
    assert.equal(source, "  let x: u32 = 1.5;");
    assert.equal(caret, "      ^");
    return true;
  });
  await cache.check(); // reported once
});

Deno.test("PipelineCache.check() passes for a kernel that compiles", async () => {
  const cache = new PipelineCache(g.device);
  cache.get(defineKernel("test.fine", () => BROKEN_WGSL.replace("1.5", "1u")));
  await cache.check();
  assert.equal(cache.size, 1);
});

Deno.test("compileErrorMessage() lists every error and falls back to the scope's text", () => {
  const code = "a\nbb\nccc";
  const messages = [
    { type: "warning", lineNum: 1, linePos: 1, message: "ignored" },
    { type: "error", lineNum: 2, linePos: 2, message: "\nShader 'k' parsing error: bad b\n ┌─" },
    { type: "error", lineNum: 3, linePos: 3, message: "bad c" },
  ];
  assert.equal(
    compileErrorMessage("k", code, messages, "unused"),
    "Kernel k failed to compile: 2:2: error: bad b\nbb\n ^\n3:3: error: bad c\nccc\n  ^",
  );
  assert.equal(
    compileErrorMessage("k", code, [], " pipeline layout mismatch\n"),
    "Kernel k failed to compile: pipeline layout mismatch",
  );
});
