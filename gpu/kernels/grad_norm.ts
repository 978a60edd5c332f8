/**
 * Global gradient norm and clip factor, computed on the GPU so that clipping
 * needs no host read-back.
 *
 *   partial pass (one dispatch per gradient tensor k):
 *     partials[base_k + w] = sum over the slice of workgroup w of x[i]^2
 *   final pass (one dispatch):
 *     s      = sum_j partials[j], j < count     (fixed order: deterministic)
 *     norm   = sqrt(s)
 *     factor = min(1, maxNorm / (norm + 1e-6))  (torch.nn.utils.clip_grad_norm_)
 *
 * Partial pass: `groups` workgroups of 256 threads walk x with a grid
 * stride (vec4 loads when n is a multiple of 4), then reduce their 256 sums
 * in workgroup memory to one value. Bindings: x (read), partials
 * (read_write); params { n, base, groups }. The caller gives each tensor its
 * own range [base, base + groups) of one partials buffer.
 * Final pass: one workgroup of 256 threads, strided sum then the same tree
 * reduction; thread 0 writes norm[0] and factor[0]. Bindings: partials
 * (read), norm (read_write), factor (read_write); params { count, maxNorm,
 * clip }.
 * maxNorm = +inf gives factor 1 (norm only) through a `clip` flag, since WGSL
 * may assume floats are finite. A non-finite norm is written as is, so the
 * caller sees it when it reads the norm.
 */
import { defineKernel, defineLaneKernels } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { ceilDiv, Params } from "../util.ts";
import { bindings } from "../wgsl.ts";

/** Workgroups of the partial pass per tensor, at most (so partials stay few). */
export const GRAD_NORM_MAX_GROUPS = 256;
/** Elements (scalars) each partial-pass workgroup aims to cover. */
const ELEMS_PER_GROUP = 4096;

const TREE_REDUCE = /* wgsl */ `
var<workgroup> acc: array<f32, 256>;

fn treeReduce(lid: u32, s: f32) -> f32 {
  acc[lid] = s;
  workgroupBarrier();
  for (var k = 128u; k > 0u; k >>= 1u) {
    if (lid < k) { acc[lid] += acc[lid + k]; }
    workgroupBarrier();
  }
  return acc[0];
}
`;

function partialWgsl(t: "f32" | "vec4f"): string {
  const sq = t === "f32" ? "x[i] * x[i]" : "dot(x[i], x[i])";
  return /* wgsl */ `
${bindings`
  params n: u32, base: u32, groups: u32
  read   x: array<${t}>
  write  partials: array<f32>
`}
${TREE_REDUCE}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  var s = 0.0;
  for (var i = wid.x * 256u + lid.x; i < p.n; i += p.groups * 256u) { s += ${sq}; }
  let total = treeReduce(lid.x, s);
  if (lid.x == 0u) { partials[p.base + wid.x] = total; }
}
`;
}

/** WGSL of the final pass: norm and clip factor from the partials. */
export const GRAD_NORM_FINAL_WGSL = /* wgsl */ `
${bindings`
  params count: u32, maxNorm: f32, clip: u32
  read   partials: array<f32>
  write  norm: array<f32>, factor: array<f32>
`}
${TREE_REDUCE}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3u) {
  var s = 0.0;
  for (var i = lid.x; i < p.count; i += 256u) { s += partials[i]; }
  let total = treeReduce(lid.x, s);
  if (lid.x == 0u) {
    let nrm = sqrt(total);
    norm[0] = nrm;
    var f = 1.0;
    if (p.clip != 0u) { f = min(1.0, p.maxNorm / (nrm + 1e-6)); }
    factor[0] = f;
  }
}
`;

// The partial sum-of-squares pass, scalar or vec4 loads (n counted in lanes).
const PARTIAL = defineLaneKernels("grad_norm.partial", partialWgsl);
const FINAL = defineKernel("grad_norm.final", () => GRAD_NORM_FINAL_WGSL);

/** Partial-pass workgroups (= partial slots) used for a tensor of n elements. */
export function gradNormGroups(n: number): number {
  return Math.min(Math.max(ceilDiv(n, ELEMS_PER_GROUP), 1), GRAD_NORM_MAX_GROUPS);
}

/**
 * Records the partial pass for x (n elements): writes `gradNormGroups(n)`
 * sums of squares to partials[base ..]. Returns the number of slots written.
 */
export function sumSquaresPartialKernel(
  g: Gpu,
  partials: GPUBuffer,
  base: number,
  x: GPUBuffer,
  n: number,
): number {
  const groups = gradNormGroups(n);
  const vec = n % 4 === 0;
  g.recorder.dispatch({
    kernel: PARTIAL(vec),
    buffers: [x, partials],
    params: new Params().u32(vec ? n / 4 : n).u32(base).u32(groups),
    workgroups: [groups],
  });
  return groups;
}

/**
 * Records the final pass: norm[0] = sqrt(sum of partials[0..count)),
 * factor[0] = min(1, maxNorm / (norm + 1e-6)).
 */
export function gradNormFinalKernel(
  g: Gpu,
  norm: GPUBuffer,
  factor: GPUBuffer,
  partials: GPUBuffer,
  count: number,
  maxNorm: number,
): void {
  g.recorder.dispatch({
    kernel: FINAL,
    buffers: [partials, norm, factor],
    params: new Params().u32(count).f32(Number.isFinite(maxNorm) ? maxNorm : 0)
      .u32(Number.isFinite(maxNorm) ? 1 : 0),
    workgroups: [1],
  });
}
