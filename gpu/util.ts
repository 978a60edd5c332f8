/** Small helpers shared by kernel launchers. */

/** `ceil(a / b)` for positive integers: workgroup counts. */
export function ceilDiv(a: number, b: number): number {
  return Math.floor((a + b - 1) / b);
}

/** Largest workgroup count WebGPU guarantees per dimension. */
export const MAX_WORKGROUPS_PER_DIM = 65535;

/**
 * Splits a 1-D workgroup count into (x, y) so that neither exceeds the
 * per-dimension limit; kernels rebuild the flat id as `y * nx + x` (nx =
 * the x count, WGSL's num_workgroups.x) and bounds-check it.
 */
export function grid1d(groups: number): [number, number] {
  if (groups <= MAX_WORKGROUPS_PER_DIM) return [Math.max(groups, 1), 1];
  const y = ceilDiv(groups, MAX_WORKGROUPS_PER_DIM);
  return [ceilDiv(groups, y), y];
}

/**
 * The workgroup counts of a flat launch of `threads` invocations in
 * `wg`-thread workgroups, spread by grid1d (the kernel's `flatEntry`
 * rebuilds the flat id).
 */
export function flatGrid(threads: number, wg: number): [number, number] {
  return grid1d(ceilDiv(threads, wg));
}

/**
 * Packs kernel parameters into the bytes of a WGSL uniform struct whose
 * fields are all 4-byte scalars (u32 / i32 / f32), in declaration order.
 */
export class Params {
  #view = new DataView(new ArrayBuffer(256));
  #n = 0;

  /** Appends a u32 field. */
  u32(v: number): this {
    this.#view.setUint32(this.#n * 4, v >>> 0, true);
    this.#n++;
    return this;
  }

  /** Appends an i32 field. */
  i32(v: number): this {
    this.#view.setInt32(this.#n * 4, v | 0, true);
    this.#n++;
    return this;
  }

  /** Appends an f32 field. */
  f32(v: number): this {
    this.#view.setFloat32(this.#n * 4, v, true);
    this.#n++;
    return this;
  }

  /** The packed bytes, padded to 16 as uniform structs require. */
  bytes(): Uint8Array {
    const len = Math.max(16, Math.ceil((this.#n * 4) / 16) * 16);
    return new Uint8Array(this.#view.buffer, 0, len);
  }
}

/** Shorthand: a params block of u32 fields. */
export function u32s(...values: number[]): Params {
  const p = new Params();
  for (const v of values) p.u32(v);
  return p;
}
