/**
 * Permute: a strided copy that reorders the dims of a tensor.
 *
 *   out[i_0, ..., i_{n-1}] = x[sum_k i_k * stride_k]
 *
 * where out has shape `shape` (the permuted dims) and `stride_k` is the
 * input's stride of the dim that goes to output position k. Each thread
 * takes one output element (so writes are contiguous), peels its index into
 * coordinates from the innermost dim out, and gathers from the input.
 *
 * Before launching, the host simplifies the problem: size-1 dims are
 * dropped and output dims that are also adjacent and in order in the input
 * are merged (a (B, T, H, D) -> (B, H, T, D) permute becomes a 4-D copy with
 * a contiguous D run). When the innermost output dim is the input's
 * contiguous innermost dim and its length is a multiple of 4, the copy moves
 * vec4s (every other stride is then a multiple of 4 too). Whenever that
 * dim is contiguous, each thread copies a run of RUN (override constant: 1,
 * 2 or 4) units along it. A permute that simplifies to the identity is a
 * plain buffer copy.
 *
 * When the innermost dim moves (a 2-D transpose, (B, C, T) -> (B, T, C)),
 * each element of a plain gather would touch its own input cache line. If
 * both the output's last dim L and the input-contiguous dim K have lengths
 * that are multiples of 4, the tile4 kernel instead gives each thread a 4x4
 * tile: it loads four vec4 runs along K (at L = l..l+3), transposes them in
 * registers and stores four vec4 runs along L (at K = k..k+3). Tile
 * coordinates carry pre-scaled strides (4 for K in the input and L in the
 * output), so all offsets stay multiples of 4.
 *
 * Data are moved as u32 bits, so f32 and u32 tensors share the kernel.
 * Bindings: x (read), out (write); params: counts, then the shape and the
 * strides as two vec4u each (up to PERMUTE_MAX_DIMS dims; uniform arrays
 * need 16-byte elements). Launch: one thread per element (run, tile), 256
 * per workgroup, 2-D grid past 65535 groups. No workgroup-shared tiling:
 * shared memory is slow on llvmpipe.
 */
import { defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { Params } from "../util.ts";
import { bindings, flatEntry } from "../wgsl.ts";

/** Most dims a permute can have after simplification (size-1 dims dropped, runs merged). */
export const PERMUTE_MAX_DIMS = 8;

function permuteSource(t: string): string {
  return /* wgsl */ `
override RUN: u32 = 1u;
${bindings`
  params n: u32, ndim: u32, pad0: u32, pad1: u32, shape: array<vec4u, 2>, stride: array<vec4u, 2>
  read   x: array<${t}>
  write  out: array<${t}>
`}

${flatEntry(256)}
  var rest = i;
  var src = 0u;
  for (var k = i32(p.ndim) - 1; k >= 0; k--) {
    let d = p.shape[k / 4][k % 4];
    // One division per dim: integer division is scalarised on CPU adapters.
    let q = rest / d;
    src += (rest - q * d) * p.stride[k / 4][k % 4];
    rest = q;
  }
  for (var r = 0u; r < RUN; r++) { out[i * RUN + r] = x[src + r]; }
}
`;
}

/** WGSL of the permute copy, one element per thread. */
export const PERMUTE_WGSL = permuteSource("u32");
/** WGSL of the permute copy, one vec4 per thread (sizes counted in vec4s). */
export const PERMUTE4_WGSL = permuteSource("vec4u");

/** WGSL of the 4x4-tile permute (the innermost dim moves; sizes in tiles, offsets in u32s). */
export const PERMUTE_TILE4_WGSL = /* wgsl */ `
struct P {
  n: u32, ndim: u32, sl: u32, ok: u32, pad0: u32, pad1: u32, pad2: u32, pad3: u32,
  shape: array<vec4u, 2>, sin: array<vec4u, 2>, sout: array<vec4u, 2>,
}
@group(0) @binding(0) var<storage, read> x: array<vec4u>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4u>;
@group(1) @binding(0) var<uniform> p: P;

${flatEntry(256)}
  var rest = i;
  var src = 0u;
  var dst = 0u;
  for (var k = i32(p.ndim) - 1; k >= 0; k--) {
    let d = p.shape[k / 4][k % 4];
    let q = rest / d;
    let c = rest - q * d;
    src += c * p.sin[k / 4][k % 4];
    dst += c * p.sout[k / 4][k % 4];
    rest = q;
  }
  // v_t holds K = k..k+3 at L = l + t; sl is L's input stride.
  let v0 = x[src / 4u];
  let v1 = x[(src + p.sl) / 4u];
  let v2 = x[(src + 2u * p.sl) / 4u];
  let v3 = x[(src + 3u * p.sl) / 4u];
  // ok is K's output stride: row u of the tile holds K = k + u.
  out[dst / 4u] = vec4u(v0.x, v1.x, v2.x, v3.x);
  out[(dst + p.ok) / 4u] = vec4u(v0.y, v1.y, v2.y, v3.y);
  out[(dst + 2u * p.ok) / 4u] = vec4u(v0.z, v1.z, v2.z, v3.z);
  out[(dst + 3u * p.ok) / 4u] = vec4u(v0.w, v1.w, v2.w, v3.w);
}
`;

const PERMUTE = defineKernel("transpose.permute", () => PERMUTE_WGSL);
const PERMUTE_TILE4 = defineKernel("transpose.permute_tile4", () => PERMUTE_TILE4_WGSL);
const PERMUTE4 = defineKernel("transpose.permute4", () => PERMUTE4_WGSL);

/** A permute reduced to its simplest equivalent form. */
export interface PermutePlan {
  /** Output shape, merged dims. */
  shape: number[];
  /** Input element stride of each output dim. */
  stride: number[];
}

/**
 * Simplifies `out = permute(x, perm)` for x of shape `inShape`: drops size-1
 * dims and merges output dims that are contiguous in the input.
 */
export function planPermute(inShape: readonly number[], perm: readonly number[]): PermutePlan {
  const inStride = new Array<number>(inShape.length);
  let s = 1;
  for (let k = inShape.length - 1; k >= 0; k--) {
    inStride[k] = s;
    s *= inShape[k];
  }
  const shape: number[] = [];
  const stride: number[] = [];
  for (const k of perm) {
    const d = inShape[k];
    if (d === 1) continue;
    const last = shape.length - 1;
    // The previous output dim continues this one in memory: merge the two.
    if (last >= 0 && stride[last] === inStride[k] * d) {
      shape[last] *= d;
      stride[last] = inStride[k];
    } else {
      shape.push(d);
      stride.push(inStride[k]);
    }
  }
  return { shape, stride };
}

/** out = permute(x, perm), x of shape `inShape`; out is contiguous in the permuted shape. */
export function permuteKernel(
  g: Gpu,
  out: GPUBuffer,
  x: GPUBuffer,
  inShape: readonly number[],
  perm: readonly number[],
): void {
  const n = inShape.reduce((a, b) => a * b, 1);
  if (n === 0) return;
  const { shape, stride } = planPermute(inShape, perm);
  const nd = shape.length;
  if (nd === 0 || (nd === 1 && stride[0] === 1)) {
    g.recorder.copy(x, 0, out, 0, n * 4);
    return;
  }
  if (nd > PERMUTE_MAX_DIMS) {
    throw new RangeError(
      `permuteKernel: ${nd} dims after merging exceed the limit of ${PERMUTE_MAX_DIMS}`,
    );
  }
  const kDim = stride.indexOf(1);
  if (nd >= 2 && kDim >= 0 && kDim < nd - 1 && shape[kDim] % 4 === 0 && shape[nd - 1] % 4 === 0) {
    permuteTile4(g, out, x, n, shape, stride, kDim);
    return;
  }
  const contiguous = stride[nd - 1] === 1;
  const vec = contiguous && shape[nd - 1] % 4 === 0;
  if (vec) {
    shape[nd - 1] /= 4;
    for (let k = 0; k < nd - 1; k++) stride[k] /= 4;
  }
  // A thread copies a run of up to 4 units of a contiguous last dim, which
  // spreads its index arithmetic over more data.
  const m = shape[nd - 1];
  const run = !contiguous ? 1 : m % 4 === 0 ? 4 : m % 2 === 0 ? 2 : 1;
  shape[nd - 1] /= run;
  stride[nd - 1] *= run;
  const lanes = (vec ? n / 4 : n) / run;
  const params = new Params().u32(lanes).u32(nd).u32(0).u32(0);
  for (let k = 0; k < PERMUTE_MAX_DIMS; k++) params.u32(k < nd ? shape[k] : 1);
  for (let k = 0; k < PERMUTE_MAX_DIMS; k++) params.u32(k < nd ? stride[k] : 0);
  g.recorder.dispatchFlat(lanes, 256, {
    kernel: vec ? PERMUTE4 : PERMUTE,
    constants: { RUN: run },
    buffers: [x, out],
    params,
  });
}

/** Dispatches the 4x4-tile kernel; `kDim` is the output dim with input stride 1. */
function permuteTile4(
  g: Gpu,
  out: GPUBuffer,
  x: GPUBuffer,
  n: number,
  shape: number[],
  stride: number[],
  kDim: number,
): void {
  const nd = shape.length;
  const l = nd - 1;
  const outStride = new Array<number>(nd);
  let s = 1;
  for (let k = nd - 1; k >= 0; k--) {
    outStride[k] = s;
    s *= shape[k];
  }
  const tiles = shape.map((d, k) => k === kDim || k === l ? d / 4 : d);
  const sin = stride.map((st, k) => k === kDim || k === l ? 4 * st : st);
  const sout = outStride.map((st, k) => k === kDim || k === l ? 4 * st : st);
  const lanes = n / 16;
  const params = new Params().u32(lanes).u32(nd).u32(stride[l]).u32(outStride[kDim])
    .u32(0).u32(0).u32(0).u32(0);
  for (const arr of [tiles, sin, sout]) {
    for (let k = 0; k < PERMUTE_MAX_DIMS; k++) params.u32(k < nd ? arr[k] : 0);
  }
  g.recorder.dispatchFlat(lanes, 256, {
    kernel: PERMUTE_TILE4,
    buffers: [x, out],
    params,
  });
}
