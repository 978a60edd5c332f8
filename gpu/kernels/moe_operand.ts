/**
 * WGSL access to the MoE FFN's folded operands, one source for both
 * designs: a folded texel matrix keeps logical row r, texel t at
 * ((r & mask)·w + t, r >> sh) of an rgba32float texture, or at that
 * (x, y) of a row-major vec4 buffer `width` texels wide (sh = 0 there).
 * Each operand `f` takes four u32 params fields (`foldFields`), filled by
 * `pushFold`.
 */
import type { Params } from "../util.ts";
import type { Fold, MoeStore } from "./moe.ts";

// The declaration of `v` and the WGSL of loading / storing texel t of the
// row at c, in a texture or a buffer `width` texels wide.
function texels(store: MoeStore, access: "read" | "write", v: string, width: string) {
  if (store === "texture") {
    return {
      decl: `var ${v}: texture_storage_2d<rgba32float, ${access}>;`,
      load: `textureLoad(${v}, vec2u(c.x + t, c.y))`,
      store: `textureStore(${v}, vec2u(c.x + t, c.y), val)`,
    };
  }
  const at = `${v}[c.y * ${width} + c.x + t]`;
  const mode = access === "read" ? "read" : "read_write";
  return { decl: `var<storage, ${mode}> ${v}: array<vec4f>;`, load: at, store: `${at} = val` };
}

/**
 * The binding of operand `v` (fold fields `f`) at `binding`, with
 * `<fn>Row(r)` (the texel coordinates of logical row r) and `<fn>(c, t)`
 * loading texel t of the row at c ("read"), or `<fn>(c, t, val)` storing
 * it ("write").
 */
export function operandWgsl(
  store: MoeStore,
  access: "read" | "write",
  binding: number,
  [v, fn, f]: [variable: string, fn: string, fold: string],
): string {
  const tx = texels(store, access, v, `p.${f}Width`);
  const accessor = access === "read"
    ? `fn ${fn}(c: vec2u, t: u32) -> vec4f { return ${tx.load}; }`
    : `fn ${fn}(c: vec2u, t: u32, val: vec4f) { ${tx.store}; }`;
  return /* wgsl */ `
@group(0) @binding(${binding}) ${tx.decl}
fn ${fn}Row(r: u32) -> vec2u { return vec2u((r & p.${f}Mask) * p.${f}W, r >> p.${f}Sh); }
${accessor}`;
}

/**
 * The B operand (packed weights, never folded) at `binding`, read at
 * absolute texel coordinates: ldB(vec2u(x, y), 0).
 */
export function readB(store: MoeStore, binding: number): string {
  const tx = texels(store, "read", "wb", "p.bWidth");
  return /* wgsl */ `
@group(0) @binding(${binding}) ${tx.decl}
fn ldB(c: vec2u, t: u32) -> vec4f { return ${tx.load}; }`;
}

/** Params fields of a folded operand `f`: texels per row, fold shift and mask, width. */
export function foldFields(f: string): string {
  return `${f}W: u32, ${f}Sh: u32, ${f}Mask: u32, ${f}Width: u32`;
}

/** Appends the `foldFields` of `f` to `p`. */
export function pushFold(p: Params, f: Fold): Params {
  return p.u32(f.w).u32(f.sh).u32((1 << f.sh) - 1).u32(f.width);
}
