/**
 * The input of one decode step: the newest token of each sequence, read on
 * the GPU from the token buffer the sampler writes, embedded at its position.
 *
 *   x[b, c] = wte[seq[b, col], c] + wpe[pos, c]      (a token ≥ V reads a zero row, as gather)
 *
 * Layouts: seq (B, S) u32, wte (V, C), wpe (ctx, C), x (B, C), all
 * row-major. `col` and `pos` are uniforms recorded with the dispatch, so the
 * step needs no read-back of the token it embeds.
 *
 * Bindings: seq, wte, wpe (read), x. Launch: one thread per element of x
 * (B·C), 256 per group, 2-D grid past 65535 groups.
 */
import { GpuError } from "../errors.ts";
import { defineKernel } from "../kernel.ts";
import type { Gpu } from "../runtime.ts";
import { Params } from "../util.ts";
import { bindings, flatEntry } from "../wgsl.ts";

/** WGSL of decode.embed. */
export const DECODE_EMBED_WGSL = /* wgsl */ `
${bindings`
  params n: u32, C: u32, S: u32, col: u32, pos: u32, V: u32
  read   seq: array<u32>, wte: array<f32>, wpe: array<f32>
  write  x: array<f32>
`}

${flatEntry(256)}
  let c = i % p.C;
  let tok = seq[(i / p.C) * p.S + p.col];
  var e = 0.0;
  if (tok < p.V) { e = wte[tok * p.C + c]; }
  x[i] = e + wpe[p.pos * p.C + c];
}
`;

const EMBED = defineKernel("decode.embed", () => DECODE_EMBED_WGSL);

/** Sizes of a decode.embed call. */
export interface DecodeEmbedDims {
  /** Sequences (rows of seq and x). */
  B: number;
  /** Columns of seq. */
  S: number;
  /** Model width. */
  C: number;
  /** Vocabulary (rows of wte). */
  V: number;
  /** Positions (rows of wpe). */
  ctx: number;
}

/** x (B, C) = wte[seq[:, col]] + wpe[pos]. */
export function decodeEmbedKernel(
  g: Gpu,
  x: GPUBuffer,
  seq: GPUBuffer,
  wte: GPUBuffer,
  wpe: GPUBuffer,
  d: DecodeEmbedDims,
  col: number,
  pos: number,
): void {
  if (col < 0 || col >= d.S || pos < 0 || pos >= d.ctx) {
    throw new GpuError(
      `decode.embed: column ${col} of ${d.S} or position ${pos} of ${d.ctx} is out of range`,
    );
  }
  const n = d.B * d.C;
  if (n === 0) return;
  g.recorder.dispatchFlat(n, 256, {
    kernel: EMBED,
    buffers: [seq, wte, wpe, x],
    params: new Params().u32(n).u32(d.C).u32(d.S).u32(col).u32(pos).u32(d.V),
  });
}
