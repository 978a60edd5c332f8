/**
 * Tests of core/atomic_write.ts: text, bytes and chunks land exactly; a failure before
 * the rename leaves the old file (or none) and no temporary; the temporary sits in the
 * target's folder under a recognisable name.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { isAtomicTemp, writeFileAtomic } from "../../core/atomic_write.ts";
import { listDir as names } from "../pipelines/_tiny_checkpoint.ts";

const root = await Deno.makeTempDir({ prefix: "ssd_atomic_" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));

/** Runs `fn` in a fresh empty folder. */
async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  await fn(await Deno.makeTempDir({ dir: root }));
}

Deno.test("writeFileAtomic() writes text, bytes and chunks exactly, with or without fsync", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "out.json");
    await writeFileAtomic(path, "héllo\n");
    assert.equal(await Deno.readTextFile(path), "héllo\n");
    await writeFileAtomic(path, Uint8Array.from([1, 2, 3]), { fsync: true });
    assert.deepEqual(await Deno.readFile(path), Uint8Array.from([1, 2, 3]));
    const big = new Uint8Array(3 << 20).map((_, i) => i % 251);
    await writeFileAtomic(path, [Uint8Array.from([9]), big, new Uint8Array(0)], { fsync: true });
    const got = await Deno.readFile(path);
    assert.equal(got.length, big.length + 1);
    assert.equal(got[0], 9);
    assert.deepEqual(got.subarray(1), big);
    assert.deepEqual(await names(dir), ["out.json"]);
  });
});

Deno.test("writeFileAtomic() failing before the rename keeps the old file and leaves no temp", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "report.html");
    await writeFileAtomic(path, "old");
    let temps: string[] = [];
    await assert.rejects(
      () =>
        writeFileAtomic(path, "new", {
          fsync: true,
          beforeRename: async () => {
            temps = (await names(dir)).filter((n) => n !== "report.html");
            throw new Error("simulated crash");
          },
        }),
      /simulated crash/,
    );
    assert.equal(temps.length, 1);
    assert.ok(temps[0].startsWith(".report.html.tmp-"), temps[0]);
    assert.ok(isAtomicTemp(temps[0]), temps[0]);
    assert.equal(await Deno.readTextFile(path), "old");
    assert.deepEqual(await names(dir), ["report.html"]);
    // No previous file: nothing is left at all.
    const fresh = join(dir, "fresh.txt");
    await assert.rejects(() =>
      writeFileAtomic(fresh, "x", {
        beforeRename: () => {
          throw new Error("boom");
        },
      })
    );
    assert.deepEqual(await names(dir), ["report.html"]);
  });
});

Deno.test("writeFileAtomic() into a missing folder throws Deno's NotFound and creates nothing", async () => {
  await withDir(async (dir) => {
    await assert.rejects(
      () => writeFileAtomic(join(dir, "no", "x.txt"), "x"),
      Deno.errors.NotFound,
    );
    assert.deepEqual(await names(dir), []);
  });
});

Deno.test("isAtomicTemp() tells temporaries from ordinary dot files", () => {
  assert.ok(isAtomicTemp(".ckpt-10.safetensors.tmp-4242-0123456789ab"));
  assert.ok(!isAtomicTemp("ckpt-10.safetensors"));
  assert.ok(!isAtomicTemp(".ckpt.safetensors.tmp-4242"));
  assert.ok(!isAtomicTemp(".hidden"));
});
