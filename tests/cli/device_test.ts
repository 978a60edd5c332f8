/**
 * `ssd device` and the program's help and usage errors, run as real
 * subprocesses (`deno run -A cli/main.ts ...`), plus `runDevice()` in process.
 *
 * "No adapter" is produced for real: `DENO_WEBGPU_BACKEND` restricts Deno's
 * WebGPU to one backend, and asking for a backend this OS does not have
 * (Metal off macOS, D3D12 on macOS) leaves `requestAdapter()` with nothing.
 */
import assert from "node:assert/strict";
import { GpuError, NO_ADAPTER_HINT } from "../../core/errors.ts";
import { requestAdapter } from "../../gpu/device.ts";
import { runDevice } from "../../pipelines/device.ts";
import { assertOneErrorLine, ssd } from "./_ssd.ts";

/** A backend that no adapter of this OS can have. */
const ABSENT_BACKEND = Deno.build.os === "darwin" ? "dx12" : "metal";

Deno.test("ssd device prints the adapter table and exits 0", async () => {
  const r = await ssd(["device"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  const adapter = await requestAdapter();
  assert.ok(adapter, NO_ADAPTER_HINT);
  // The name printed is the one this process's adapter reports.
  assert.match(r.stdout, new RegExp(`^  name +${escape(adapter.info.description)}$`, "m"));
  assert.match(r.stdout, /^ {2}backend +(Vulkan|Metal|D3D12)$/m);
  assert.match(r.stdout, /^ {2}fallback +(yes|no)/m);
  assert.match(r.stdout, new RegExp(`^  deno +${escape(Deno.version.deno)} `, "m"));
  const binding = adapter.limits.maxStorageBufferBindingSize;
  assert.match(r.stdout, new RegExp(`^  maxStorageBufferBindingSize +${binding} \\(`, "m"));
  assert.match(r.stdout, /^Features$/m);
});

Deno.test("ssd device --json prints one JSON document with name, limits and features", async () => {
  const r = await ssd(["device", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  const adapter = await requestAdapter();
  assert.ok(adapter, NO_ADAPTER_HINT);
  assert.equal(doc.name, adapter.info.description || adapter.info.device);
  assert.equal(typeof doc.fallback, "boolean");
  assert.equal(doc.deno.version, Deno.version.deno);
  // Raised limits are the adapter's maxima, not WebGPU's defaults.
  assert.equal(doc.limits.maxStorageBufferBindingSize, adapter.limits.maxStorageBufferBindingSize);
  assert.equal(doc.limits.maxBufferSize, adapter.limits.maxBufferSize);
  assert.ok(Array.isArray(doc.features));
  assert.deepEqual(doc.features, [...doc.features].sort());
  assert.equal(doc.features.includes("timestamp-query"), adapter.features.has("timestamp-query"));
});

Deno.test("ssd --help lists the subcommands and the global flags", async () => {
  const r = await ssd(["--help"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Usage: ssd /m);
  assert.match(r.stdout, /^ {2}device /m);
  assert.match(r.stdout, /--no-autotune/);
  assert.match(r.stdout, /-V, --version/);
});

Deno.test("ssd device --help and ssd help device describe --json", async () => {
  for (const args of [["device", "--help"], ["help", "device"]]) {
    const r = await ssd(args);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: ssd device /m);
    assert.match(r.stdout, /--json/);
  }
});

Deno.test("ssd --version prints the version from deno.json", async () => {
  const r = await ssd(["--version"]);
  assert.equal(r.code, 0, r.stderr);
  const { default: denoJson } = await import("../../deno.json", { with: { type: "json" } });
  assert.equal(r.stdout.trim(), denoJson.version);
});

Deno.test("ssd device --bogus exits 2 with one line naming the flag", async () => {
  const r = await ssd(["device", "--bogus"]);
  const line = assertOneErrorLine(r, 2);
  assert.match(line, /unknown option '--bogus'/);
  assert.match(line, /ssd device --help/);
  assert.equal(r.stdout, "");
});

Deno.test("ssd with an unknown subcommand exits 2 with one line and a suggestion", async () => {
  const r = await ssd(["devise"]);
  const line = assertOneErrorLine(r, 2);
  assert.match(line, /unknown command 'devise'/);
  assert.match(line, /did you mean device\?/);
});

Deno.test("ssd device with a stray argument exits 2", async () => {
  const line = assertOneErrorLine(await ssd(["device", "extra"]), 2);
  assert.match(line, /too many arguments/);
  assert.doesNotMatch(line, /\.\s*\(see/);
});

Deno.test("ssd with no subcommand prints the help on stderr and exits 2", async () => {
  const r = await ssd([]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^Usage: ssd /m);
  assert.equal(r.stdout, "");
});

Deno.test("ssd device with no WebGPU adapter exits 1 with the install hint", async () => {
  for (const args of [["device"], ["device", "--json"]]) {
    const r = await ssd(args, { DENO_WEBGPU_BACKEND: ABSENT_BACKEND });
    const line = assertOneErrorLine(r, 1);
    assert.equal(line, `ssd: ${NO_ADAPTER_HINT}`);
    assert.equal(r.stdout, "", "no partial output");
  }
});

Deno.test("runDevice() reports the adapter and the Deno version, then closes its device", async () => {
  let closed = false;
  const report = await runDevice({
    acquire: async () => {
      const { acquireDevice } = await import("../../gpu/device.ts");
      const dev = await acquireDevice();
      dev.device.lost.then(() => closed = true);
      return dev;
    },
  });
  assert.equal(report.deno.version, Deno.version.deno);
  assert.ok(report.name.length > 0);
  assert.ok(report.limits.maxComputeWorkgroupSizeX >= 64);
  await new Promise((r) => setTimeout(r, 0));
  assert.ok(closed, "runDevice() must destroy the device it opened");
});

Deno.test("runDevice() passes the no-adapter GpuError through", async () => {
  await assert.rejects(
    runDevice({ acquire: () => Promise.reject(new GpuError(NO_ADAPTER_HINT)) }),
    (e: Error) => e instanceof GpuError && e.message === NO_ADAPTER_HINT,
  );
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
