/**
 * Minimal reproduction of the abort at process exit, with raw WebGPU only
 * (nothing of ssd): open a device, run one compute dispatch, read it back,
 * return. With Deno's default backends wgpu also initialises GL through
 * glvnd's libEGL, whose per-thread state is freed twice at exit; glibc then
 * sometimes aborts ("double free or corruption", "corrupted size vs.
 * prev_size", exit 134). Under glibc's malloc checker the abort is nearly
 * certain:
 *
 *   LD_PRELOAD=/lib/x86_64-linux-gnu/libc_malloc_debug.so.0 \
 *   GLIBC_TUNABLES=glibc.malloc.check=3 \
 *   deno run -A tests/stress/exit_repro.ts            # aborts
 *
 *   DENO_WEBGPU_BACKEND=vulkan <same command>         # exits 0
 *
 * `gpu/device.ts` sets DENO_WEBGPU_BACKEND=vulkan on Linux for that reason.
 * Pass `--maps` to print whether libEGL is mapped into the process.
 */
// Each adapter request enumerates every backend again (GL included).
const requests = Number(Deno.args[Deno.args.indexOf("--adapters") + 1] ?? 1);
for (let i = 1; i < (Deno.args.includes("--adapters") ? requests : 1); i++) {
  await navigator.gpu.requestAdapter();
}
const adapter = await navigator.gpu.requestAdapter();
if (!adapter) {
  console.error("no WebGPU adapter");
  Deno.exit(2);
}
const device = await adapter.requestDevice();
const n = 1024;
const buf = device.createBuffer({
  size: n * 4,
  usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
});
const read = device.createBuffer({
  size: n * 4,
  usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
});
const module = device.createShaderModule({
  code: `@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) {
  y[id.x] = f32(id.x) * 2.0;
}`,
});
const pipeline = device.createComputePipeline({
  layout: "auto",
  compute: { module, entryPoint: "main" },
});
const bind = device.createBindGroup({
  layout: pipeline.getBindGroupLayout(0),
  entries: [{ binding: 0, resource: { buffer: buf } }],
});
const rounds = Number(Deno.args[Deno.args.indexOf("--rounds") + 1] ?? 1);
for (let r = 0; r < (Deno.args.includes("--rounds") ? rounds : 1); r++) {
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bind);
  pass.dispatchWorkgroups(n / 64);
  pass.end();
  enc.copyBufferToBuffer(buf, 0, read, 0, n * 4);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const y = new Float32Array(read.getMappedRange());
  if (y[n - 1] !== (n - 1) * 2) throw new Error(`wrong result ${y[n - 1]}`);
  read.unmap();
}
// Idle long enough for the runtime's blocking-pool threads (where the
// adapter was created) to time out and exit: their thread-exit destructors
// free EGL's per-thread state the first time.
const idle = Number(Deno.args[Deno.args.indexOf("--idle") + 1] ?? 0);
if (Deno.args.includes("--idle")) await new Promise((r) => setTimeout(r, idle * 1000));
if (Deno.args.includes("--maps")) {
  const maps = Deno.readTextFileSync("/proc/self/maps");
  console.log(`libEGL mapped: ${maps.includes("libEGL")}`);
}
console.log("ok");
