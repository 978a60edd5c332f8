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
 * kernel).
 *
 * Launch: one thread per texel, 64 per workgroup, 2-D grid past 65535
 * groups; into a vec4 buffer or an rgba32float storage texture (at least
 * width × height). Work: d_ff·C reads per pack.
 */
import { defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { ceilDiv, Params } from "../util.ts";
import { bindings, flatEntry } from "../wgsl.ts";
import { MOE_WG, type MoeOperand, type MoeSizes, type MoeStore } from "./moe.ts";

function packWgsl(store: MoeStore): string {
  const dst = store === "texture"
    ? "@group(0) @binding(1) var dst: texture_storage_2d<rgba32float, write>;"
    : "@group(0) @binding(1) var<storage, read_write> dst: array<vec4f>;";
  const write = store === "texture" ? "textureStore(dst, vec2u(x, y), v);" : "dst[i] = v;";
  return /* wgsl */ `
override LAYOUT: u32 = 0u;
override SOURCE: u32 = 0u;
${bindings`
  params n: u32, width: u32, C: u32, dff: u32, s: u32, sp4: u32
  read   w: array<f32>
`}
${dst}

// W(n, c): c_fc.weight (SOURCE 0) or c_proj.weight (SOURCE 1).
fn weight(n: u32, c: u32) -> f32 {
  if (SOURCE == 0u) { return w[n * p.C + c]; }
  return w[c * p.dff + n];
}

${flatEntry(MOE_WG)}
  let x = i % p.width;
  let y = i / p.width;
  var v = vec4f(0.0);
  if (LAYOUT == 0u) {
    let e = x / p.sp4;
    let n0 = (x % p.sp4) * 4u;
    for (var q = 0u; q < 4u; q++) {
      if (n0 + q < p.s && y < p.C) { v[q] = weight(e * p.s + n0 + q, y); }
    }
  } else {
    let sp = p.sp4 * 4u;
    let e = y / sp;
    let j = y % sp;
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

/** Records dst = the packed B operand of `w` (see the header). */
export function moePackKernel(
  g: Gpu,
  dst: MoeOperand,
  w: GPUBuffer,
  { source, layout, sz }: MoePackOptions,
): void {
  const s = sz.dff / sz.E;
  const sp4 = ceilDiv(s, 4);
  const C4 = ceilDiv(sz.C, 4);
  const [width, height] = layout === "up" ? [sz.E * sp4, C4 * 4] : [C4, sz.E * sp4 * 4];
  const n = width * height;
  const store: MoeStore = dst instanceof GPUBuffer ? "buffer" : "texture";
  g.recorder.dispatchFlat(n, MOE_WG, {
    kernel: defineKernel(`moe.pack_${store}`, () => packWgsl(store)),
    constants: { LAYOUT: layout === "up" ? 0 : 1, SOURCE: source === "fc" ? 0 : 1 },
    buffers: [w, dst],
    params: new Params().u32(n).u32(width).u32(sz.C).u32(sz.dff).u32(s).u32(sp4),
  });
}
