/**
 * Packs FFN weights into the grouped products' B operands (the layouts of
 * `moe.ts`; the forward and the training backward share this one kernel).
 * A pack reads one of the two weights, W(n, c) for neuron n and model column c:
 *   "fc"    c_fc.weight [d_ff, C]:   W(n, c) = w[n·C + c]
 *   "proj"  c_proj.weight [C, d_ff]: W(n, c) = w[c·d_ff + n]
 * into one of the two layouts, zero past s and C:
 *   "up"    E·sp4 texels wide, C4·4 high: texel (e·sp4 + t, c), lane q
 *           = W(e·s + 4t + q, c)            (W1ᵀ of the forward, from fc)
 *   "down"  C4 texels wide, E·sp high: texel (t, e·sp + j), lane q
 *           = W(e·s + j, 4t + q)            (W2ᵀ of the forward, from proj)
 * The backward packs the other way round: proj into "up" (dAct = dOut ·
 * W2 runs on the up kernel) and fc into "down" (dX = dPre · W1 on the down
 * kernel). Those two are the weight's own memory read as texels when s and
 * C are multiples of 4: into a scratch texture with rows of a multiple of
 * 256 bytes they are recorded as a buffer-to-texture copy (`moePackIsCopy`),
 * which costs a fraction of the kernel.
 *
 * Launch: one thread per texel, 8 × 8 texels per workgroup (so no thread
 * divides a flat id by the width), into a vec4 buffer or an rgba32float
 * storage texture (at least width × height). Work: d_ff·C reads per pack.
 */
import { defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { scratchTextureOf } from "../scratch.ts";
import { ceilDiv, Params } from "../util.ts";
import { bindings } from "../wgsl.ts";
import type { MoeOperand, MoeSizes, MoeStore } from "./moe.ts";

/** Side of the pack's square workgroup: one thread per texel of an 8 × 8 block. */
const PACK_WG = 8;

function packWgsl(store: MoeStore): string {
  const dst = store === "texture"
    ? "@group(0) @binding(1) var dst: texture_storage_2d<rgba32float, write>;"
    : "@group(0) @binding(1) var<storage, read_write> dst: array<vec4f>;";
  const write = store === "texture"
    ? "textureStore(dst, vec2u(x, y), v);"
    : "dst[y * p.width + x] = v;";
  return /* wgsl */ `
override LAYOUT: u32 = 0u;
override SOURCE: u32 = 0u;
// sp4 as a constant: x / sp4 and y / sp are then multiplies (a division by a
// uniform is eight scalar divisions per lane group on CPU adapters).
override SP4: u32 = 1u;
${bindings`
  params width: u32, height: u32, C: u32, dff: u32, s: u32
  read   w: array<f32>
`}
${dst}

// W(n, c): c_fc.weight (SOURCE 0) or c_proj.weight (SOURCE 1).
fn weight(n: u32, c: u32) -> f32 {
  if (SOURCE == 0u) { return w[n * p.C + c]; }
  return w[c * p.dff + n];
}

@compute @workgroup_size(${PACK_WG}, ${PACK_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let x = gid.x;
  let y = gid.y;
  if (x >= p.width || y >= p.height) { return; }
  var v = vec4f(0.0);
  if (LAYOUT == 0u) {
    let e = x / SP4;
    let n0 = (x % SP4) * 4u;
    for (var q = 0u; q < 4u; q++) {
      if (n0 + q < p.s && y < p.C) { v[q] = weight(e * p.s + n0 + q, y); }
    }
  } else {
    let e = y / (SP4 * 4u);
    let j = y % (SP4 * 4u);
    for (var q = 0u; q < 4u; q++) {
      let c = x * 4u + q;
      if (j < p.s && c < p.C) { v[q] = weight(e * p.s + j, c); }
    }
  }
  ${write}
}
`;
}

/** Which weight a pack reads and which B layout it writes (see the header). */
export interface MoePackOptions {
  /** c_fc.weight or c_proj.weight. */
  source: "fc" | "proj";
  /** The up product's B layout or the down product's. */
  layout: "up" | "down";
  /** Sizes of the call. */
  sz: MoeSizes;
}

/**
 * Whether the pack of `source` into `layout` is the weight's own memory read
 * as texels, row for row (the backward's two packs, where s and C are
 * multiples of 4), with rows of a multiple of 256 bytes (what a copy into a
 * texture needs): then `moePackKernel` records a copy instead of a kernel.
 */
export function moePackIsCopy({ source, layout, sz }: MoePackOptions): boolean {
  const s = sz.dff / sz.E;
  const rowBytes = layout === "up" ? sz.dff * 4 : sz.C * 4;
  const identity = (source === "proj") === (layout === "up");
  return identity && s % 4 === 0 && sz.C % 4 === 0 && rowBytes % 256 === 0;
}

/**
 * Records dst = the packed B operand of `w` (see the header): a copy where
 * `moePackIsCopy` and dst is a scratch texture, else the pack kernel.
 */
export function moePackKernel(
  g: Gpu,
  dst: MoeOperand,
  w: GPUBuffer,
  opts: MoePackOptions,
): void {
  const { source, layout, sz } = opts;
  const s = sz.dff / sz.E;
  const sp4 = ceilDiv(s, 4);
  const C4 = ceilDiv(sz.C, 4);
  const [width, height] = layout === "up" ? [sz.E * sp4, C4 * 4] : [C4, sz.E * sp4 * 4];
  const texture = dst instanceof GPUBuffer ? null : scratchTextureOf(dst);
  if (texture && moePackIsCopy(opts)) {
    g.recorder.copyToTexture(w, width * 16, texture, width, height);
    return;
  }
  const store: MoeStore = dst instanceof GPUBuffer ? "buffer" : "texture";
  g.recorder.dispatch({
    kernel: defineKernel(`moe.pack_${store}`, () => packWgsl(store)),
    constants: { LAYOUT: layout === "up" ? 0 : 1, SOURCE: source === "fc" ? 0 : 1, SP4: sp4 },
    buffers: [w, dst],
    params: new Params().u32(width).u32(height).u32(sz.C).u32(sz.dff).u32(s),
    workgroups: [ceilDiv(width, PACK_WG), ceilDiv(height, PACK_WG)],
  });
}
