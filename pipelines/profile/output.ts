/** The files of `ssd profile --out`: per-neuron NumPy arrays, each written atomically. */
import { resolve } from "node:path";
import { writeFileAtomic } from "../../core/atomic_write.ts";
import type { CheckpointProfile } from "./types.ts";

/** A minimal .npy (format 1.0) of a little-endian f4 or i4 array of the given shape. */
export function npyBytes(data: Float32Array | Int32Array, shape: number[]): Uint8Array {
  const descr = data instanceof Float32Array ? "<f4" : "<i4";
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(", ");
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${dims}), }`;
  // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64.
  const total = Math.ceil((10 + header.length + 1) / 64) * 64;
  header = header.padEnd(total - 10 - 1) + "\n";
  const out = new Uint8Array(total + data.byteLength);
  out.set([
    0x93,
    ...new TextEncoder().encode("NUMPY"),
    1,
    0,
    header.length & 0xff,
    header.length >> 8,
  ]);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), total);
  return out;
}

/** `runs/a/ckpt-500.safetensors` → `00_ckpt-500` (the index keeps equal file names apart). */
function fileStem(index: number, path: string): string {
  const base = path.split(/[\\/]/).pop()!.replace(/\.safetensors$/, "");
  return `${String(index).padStart(2, "0")}_${base.replace(/[^A-Za-z0-9._-]/g, "_")}`;
}

/** Writes the .npy files and sets each profile's `files` (profile.json is written last). */
export async function writeArrays(
  out: string,
  profiles: CheckpointProfile[],
  firing: Float32Array[][],
  labels: Int32Array[][] | null,
  L: number,
  d_ff: number,
): Promise<void> {
  await Deno.mkdir(out, { recursive: true });
  const flat = (parts: ArrayLike<number>[], into: Float32Array | Int32Array) => {
    parts.forEach((f, l) => into.set(f, l * d_ff));
    return into;
  };
  for (const [ci, p] of profiles.entries()) {
    const stem = fileStem(ci, p.path);
    const files = { firing: `${stem}.firing.npy`, experts: null as string | null };
    const fire = flat(firing[ci], new Float32Array(L * d_ff));
    await writeFileAtomic(resolve(out, files.firing), npyBytes(fire, [L, d_ff]));
    if (labels) {
      files.experts = `${stem}.experts.npy`;
      const lab = flat(labels[ci], new Int32Array(L * d_ff));
      await writeFileAtomic(resolve(out, files.experts), npyBytes(lab, [L, d_ff]));
    }
    p.files = files;
  }
}
