/**
 * Register-tiled matmul without workgroup memory: the designs for CPU-backed
 * adapters (Mesa llvmpipe), whose workgroup memory and barriers are slow.
 *
 *   C[z] (M×N) = op(A[z]) · op(B[z]) (+ bias[N]) (+ C[z] when ACCUMULATE)
 *
 * Each invocation owns a TM×TN tile of C (TN a multiple of 4, kept as vec4
 * accumulators) and walks K four at a time. Two variants differ only in
 * where the operands come from:
 *
 * - "register": straight from the storage buffers, honouring TRANS_A /
 *   TRANS_B, with vec4 loads along the contiguous axis when that axis is a
 *   multiple of 4 (vec4 or f32 bindings: two WGSL variants per operand) and
 *   scalar loads otherwise; values past K are selected to zero.
 * - "texture": from two rgba32float read-only storage textures that
 *   `matmul.ts` packs first (At: one row per row of op(A), texels along K;
 *   Bt: one row per k, texels along N, K padded to a multiple of 4 with
 *   zeros), so the kernel is the same for every transpose form.
 *
 * Bindings (group 0): A (buffer or At), B (buffer or Bt), bias (a dummy
 * buffer when HAS_BIAS is false), C (read_write). Group 1: params.
 * Launch: workgroup (WX, WY), grid (ceil(N / (TN·WX)), ceil(M / (TM·WY)), batch).
 * Rows and columns past M / N read clamped junk that only reaches outputs
 * the epilogue does not store.
 *
 * The loops are written as small WGSL loops over arrays with constant trip
 * counts (NIR unrolls the inner ones), not fully unrolled text: on llvmpipe
 * the fully unrolled forms were 2-5× slower (every load expands into
 * per-invocation code, and the unrolled body no longer fits the CPU's
 * instruction caches). Measurements and what did not help: `matmul.ts`.
 */
import { bindings } from "../wgsl.ts";

/** Tile shape of a register-tiled kernel. */
export interface RegisterTile {
  /** Rows of C per invocation. */
  tm: number;
  /** Columns of C per invocation (multiple of 4). */
  tn: number;
  /** Workgroup size along N. */
  wx: number;
  /** Workgroup size along M. */
  wy: number;
}

/**
 * The header of the buffer-fed kernels (register and shared-memory tiles):
 * their override flags and bindings a, b, bias | c with the batched
 * strides and offsets; `a` and `b` hold elements of type `ta` and `tb`.
 */
export function bufferFedHeader(ta: string, tb: string): string {
  return /* wgsl */ `${TRANS_OVERRIDES}${EPILOGUE_OVERRIDES}
${bindings`
  params m: u32, k: u32, n: u32, sa: u32, sb: u32, sc: u32, oa: u32, ob: u32, oc: u32
  read   a: array<${ta}>, b: array<${tb}>, bias: array<f32>
  write  c: array<f32>
`}`;
}

const EPILOGUE_OVERRIDES = /* wgsl */ `
override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;
`;
const TRANS_OVERRIDES = /* wgsl */ `
override TRANS_A: bool = false;
override TRANS_B: bool = false;
`;

/** Epilogue shared by both variants: bounds-checked scalar stores of acc. */
function epilogue(tm: number, tn4: number, ldc: string, biasOff: string): string {
  return /* wgsl */ `
  for (var i = 0u; i < ${tm}u; i++) {
    let r = row + i;
    if (r >= p.m) { break; }
    for (var j = 0u; j < ${tn4}u; j++) {
      for (var e = 0u; e < 4u; e++) {
        let col = col0 + j * 4u + e;
        if (col < p.n) {
          let ci = cBase + r * ${ldc} + col;
          var v = acc[i][j][e];
          if (HAS_BIAS) { v += bias[${biasOff}col]; }
          if (ACCUMULATE) { v += c[ci]; }
          c[ci] = v;
        }
      }
    }
  }`;
}

// The inner product of one K block: for each of its 4 steps kk, load the B
// fragment bn_j (`loadB`), then acc[i][j] += A_op(row+i, k+kk) · bn_j.
function kkLoop(tm: number, tn4: number, loadB: string): string {
  let fma = "";
  for (let j = 0; j < tn4; j++) fma += `acc[i][${j}] = fma(vec4f(x), bn${j}, acc[i][${j}]);\n`;
  return /* wgsl */ `for (var kk = 0u; kk < 4u; kk++) {
        ${loadB}
        for (var i = 0u; i < ${tm}u; i++) {
          let x = av[i][kk];
          ${fma}
        }
      }`;
}

// The A fragment av[i] = A_op(row+i, k..k+3), written with constant indices;
// values past K are selected to zero.
function registerLoadA(tm: number, vecA: boolean): string {
  const za = (idx: string, kk: string) => `select(0.0, a[${idx}], ${kk} < p.k)`;
  let loadA = "if (!TRANS_A) {\n";
  for (let i = 0; i < tm; i++) {
    const base = `aBase + (row + ${i}u) * p.k + k`;
    loadA += vecA
      ? `av[${i}] = a[(${base}) / 4u];\n`
      : `av[${i}] = vec4f(${
        [0, 1, 2, 3].map((e) => za(`${base} + ${e}u`, `k + ${e}u`)).join(", ")
      });\n`;
  }
  loadA += "} else {\n";
  for (let kk = 0; kk < 4; kk++) {
    if (vecA) {
      for (let q = 0; q < tm / 4; q++) {
        loadA +=
          `{ let t = select(vec4f(0.0), a[(aBase + (k + ${kk}u) * p.m + row + ${4 * q}u) / 4u], ` +
          `k + ${kk}u < p.k);\n`;
        for (let e = 0; e < 4; e++) loadA += `av[${4 * q + e}][${kk}] = t[${e}];\n`;
        loadA += "}\n";
      }
    } else {
      for (let i = 0; i < tm; i++) {
        loadA += `av[${i}][${kk}] = ${
          za(`aBase + (k + ${kk}u) * p.m + row + ${i}u`, `k + ${kk}u`)
        };\n`;
      }
    }
  }
  return loadA + "}\n";
}

// The B fragments: `loadB` for one kk (bn_j = B_op(k+kk, col0 + 4j .. 4j+3));
// for transposed B, `loadBt` loads the 4×TN block before the kk loop (vec4
// along K) and `pickBt` picks bn_j out of it for one kk.
function registerLoadB(tn: number, vecB: boolean) {
  const tn4 = tn / 4;
  const zb = (idx: string, kk: string) => `select(0.0, b[${idx}], ${kk} < p.k)`;
  let loadB = "";
  for (let j = 0; j < tn4; j++) {
    const nn = `bBase + (k + kk) * p.n + col0 + ${4 * j}u`;
    const v = vecB
      ? `b[(${nn}) / 4u]`
      : `vec4f(b[${nn}], b[${nn} + 1u], b[${nn} + 2u], b[${nn} + 3u])`;
    loadB += `let bn${j} = select(vec4f(0.0), ${v}, k + kk < p.k);\n`;
  }
  let loadBt = "";
  for (let j = 0; j < tn; j++) {
    const kb = `bBase + (col0 + ${j}u) * p.k + k`;
    loadBt += vecB
      ? `let bt${j} = b[(${kb}) / 4u];\n`
      : `let bt${j} = vec4f(${
        [0, 1, 2, 3].map((e) => zb(`${kb} + ${e}u`, `k + ${e}u`)).join(", ")
      });\n`;
  }
  let pickBt = "";
  for (let j = 0; j < tn4; j++) {
    const q = [0, 1, 2, 3].map((e) => `bt${4 * j + e}[kk]`).join(", ");
    pickBt += `let bn${j} = vec4f(${q});\n`;
  }
  return { loadB, loadBt, pickBt };
}

/**
 * WGSL of the buffer-fed register kernel. `vecA` / `vecB` choose vec4
 * bindings: along K for A (M for A when TRANS_A), along N for B (K for B
 * when TRANS_B); the launcher picks them only when that axis is a multiple
 * of 4, so every vec4 starts on an element index divisible by 4. K is walked
 * in blocks of 4 rounded up: values past K are selected to zero (the loads
 * themselves are clamped in bounds), which keeps the code (and llvmpipe's
 * compile time) smaller than a separate tail loop.
 *
 * Launch: workgroup (wx, wy), each invocation a tm × tn tile of C: grid
 * (⌈n / (tn·wx)⌉, ⌈m / (tm·wy)⌉, batch).
 */
export function registerWgsl(t: RegisterTile, vecA: boolean, vecB: boolean): string {
  const { tm, tn, wx, wy } = t;
  const tn4 = tn / 4;
  if (tn % 4 !== 0 || (vecA && tm % 4 !== 0)) throw new Error(`Bad register tile ${tm}x${tn}`);
  const { loadB, loadBt, pickBt } = registerLoadB(tn, vecB);
  return /* wgsl */ `${bufferFedHeader(vecA ? "vec4f" : "f32", vecB ? "vec4f" : "f32")}

@compute @workgroup_size(${wx}, ${wy})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = (wid.y * ${wy}u + lid.y) * ${tm}u;
  let col0 = (wid.x * ${wx}u + lid.x) * ${tn}u;
  let aBase = p.oa + wid.z * p.sa;
  let bBase = p.ob + wid.z * p.sb;
  let cBase = p.oc + wid.z * p.sc;
  var acc: array<array<vec4f, ${tn4}>, ${tm}>;
  for (var k = 0u; k < p.k; k += 4u) {
    var av: array<vec4f, ${tm}>;
    ${registerLoadA(tm, vecA)}
    if (!TRANS_B) {
      ${kkLoop(tm, tn4, loadB)}
    } else {
      ${loadBt}
      ${kkLoop(tm, tn4, pickBt)}
    }
  }
  ${epilogue(tm, tn4, "p.n", "")}
}
`;
}

/**
 * WGSL of the texture-fed register kernel. At row r = z·M + m holds
 * op(A)[z][m][4t..4t+3] in texel t; Bt row z·bRows + k holds
 * op(B)[z][k][4t..4t+3] (bRows = 0 when B is shared across the batch).
 */
export function textureWgsl(t: RegisterTile): string {
  const { tm, tn, wx, wy } = t;
  const tn4 = tn / 4;
  if (tn % 4 !== 0) throw new Error(`Bad texture tile ${tm}x${tn}`);
  let loadB = "let kr = br + k4 * 4u + kk;\n";
  for (let j = 0; j < tn4; j++) loadB += `let bn${j} = textureLoad(bt, vec2u(col4 + ${j}u, kr));\n`;
  return /* wgsl */ `${EPILOGUE_OVERRIDES}
struct P { m: u32, k: u32, n: u32, bRows: u32, sc: u32, oc: u32, ldc: u32, ob: u32 }
@group(0) @binding(0) var at: texture_storage_2d<rgba32float, read>;
@group(0) @binding(1) var bt: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(1) @binding(0) var<uniform> p: P;

@compute @workgroup_size(${wx}, ${wy})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = (wid.y * ${wy}u + lid.y) * ${tm}u;
  let col0 = (wid.x * ${wx}u + lid.x) * ${tn}u;
  let col4 = col0 / 4u;
  let ar = wid.z * p.m + row;
  let br = wid.z * p.bRows;
  let cBase = p.oc + wid.z * p.sc;
  var acc: array<array<vec4f, ${tn4}>, ${tm}>;
  let kt = (p.k + 3u) / 4u;
  for (var k4 = 0u; k4 < kt; k4++) {
    var av: array<vec4f, ${tm}>;
    for (var i = 0u; i < ${tm}u; i++) { av[i] = textureLoad(at, vec2u(k4, ar + i)); }
    ${kkLoop(tm, tn4, loadB)}
  }
  ${epilogue(tm, tn4, "p.ldc", "p.ob + ")}
}
`;
}

/**
 * WGSL of the pack kernel feeding the texture design: texel (t, z·rowsPad + r)
 * = X[z·sz + r·sr + (4t+e)·se] for e in 0..3, zero where r >= rows or
 * 4t+e >= cols. One invocation per texel; workgroup 16×16.
 */
export const PACK_WGSL = /* wgsl */ `
struct P { rows: u32, cols: u32, rowsPad: u32, width: u32, sr: u32, se: u32, sz: u32, off: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var dst: texture_storage_2d<rgba32float, write>;
@group(1) @binding(0) var<uniform> p: P;

@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let t = gid.x;
  let r = gid.y;
  if (t >= p.width || r >= p.rowsPad) { return; }
  var v = vec4f(0.0);
  if (r < p.rows) {
    let base = p.off + gid.z * p.sz + r * p.sr;
    for (var e = 0u; e < 4u; e++) {
      let col = t * 4u + e;
      if (col < p.cols) { v[e] = x[base + col * p.se]; }
    }
  }
  textureStore(dst, vec2u(t, gid.z * p.rowsPad + r), v);
}
`;
