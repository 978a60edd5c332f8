/**
 * The mechanism behind the abort at exit, with raw WebGPU only (nothing of
 * ssd): open a device, run one compute dispatch, read it back, and report
 * whether glvnd's libEGL is mapped into the process.
 *
 *   deno run -A tests/stress/exit_repro.ts                              # libEGL mapped: true
 *   DENO_WEBGPU_BACKEND=vulkan deno run -A tests/stress/exit_repro.ts   # libEGL mapped: false
 *
 * With Deno's default backend set, wgpu initialises GL through libEGL beside
 * Vulkan; EGL's per-thread state is then freed twice at exit (by the
 * instance's teardown and by libGLdispatch's thread-exit destructor), which
 * is what aborts some long processes (`tests/stress/exit_repro.sh`
 * reproduces the aborts). A process this short rarely aborts; the point
 * here is that Vulkan alone keeps libEGL out, which `gpu/device.ts` asks for
 * on Linux. Exits 1 when the variable asks for Vulkan only and libEGL is
 * mapped anyway.
 */
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

const egl = Deno.readTextFileSync("/proc/self/maps").includes("libEGL");
const backends = Deno.env.get("DENO_WEBGPU_BACKEND") ?? "(default)";
console.log(`DENO_WEBGPU_BACKEND=${backends}: libEGL mapped: ${egl}`);
device.destroy();
if (egl && backends === "vulkan") Deno.exitCode = 1;
