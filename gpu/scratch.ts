/**
 * Per-device scratch resources of the texture-fed kernels (matmul, MoE):
 * rgba32float storage textures by owner, slot and size class, reused by
 * every later call of the same class, and a dummy storage buffer to bind
 * where a kernel's optional input (a bias) is absent.
 *
 * Reuse is safe because every write and read of a scratch texture is
 * recorded in order in the command stream; what must outlive the next call
 * (e.g. for a backward) has to be copied out by its owner.
 */
import { atCloseGpu, type Gpu } from "./runtime.ts";

interface ScratchTexture {
  texture: GPUTexture;
  // One view per texture, so the recorder's bind-group cache sees the same object.
  view: GPUTextureView;
}

interface DeviceScratch {
  dummy: GPUBuffer;
  textures: Map<string, ScratchTexture>;
}

const scratch = new WeakMap<GPUDevice, DeviceScratch>();

function deviceScratch(g: Gpu): DeviceScratch {
  let s = scratch.get(g.device);
  if (!s) {
    s = {
      dummy: g.device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE, label: "dummy" }),
      textures: new Map(),
    };
    scratch.set(g.device, s);
  }
  return s;
}

// The texture behind each scratch view, for copies into it.
const textureOfView = new WeakMap<GPUTextureView, GPUTexture>();

/** The texture of a `scratchTexture` view (a copy destination), or null for other views. */
export function scratchTextureOf(view: GPUTextureView): GPUTexture | null {
  return textureOfView.get(view) ?? null;
}

/** A 16-byte storage buffer to bind where an optional input is absent. */
export function dummyBuffer(g: Gpu): GPUBuffer {
  return deviceScratch(g).dummy;
}

/** Rounds a texture dimension up to a size class (quarter powers of two), for reuse. */
export function dimClass(n: number): number {
  const v = Math.max(16, n);
  const pow = 2 ** Math.floor(Math.log2(v));
  const step = Math.max(pow / 4, 16);
  return Math.ceil(v / step) * step;
}

/**
 * A scratch rgba32float storage texture of at least width×height texels
 * (size-classed, capped at the device limit) for `owner`'s operand `slot`.
 */
export function scratchTexture(
  g: Gpu,
  owner: string,
  slot: string,
  width: number,
  height: number,
): GPUTextureView {
  const limit = g.device.limits.maxTextureDimension2D;
  const w = Math.min(dimClass(width), limit);
  const h = Math.min(dimClass(height), limit);
  const key = `${owner}.${slot}:${w}x${h}`;
  const s = deviceScratch(g);
  let t = s.textures.get(key);
  if (!t) {
    const texture = g.device.createTexture({
      size: [w, h],
      format: "rgba32float",
      // COPY_DST: a kernel's operand that is a plain copy of a buffer is filled by a copy.
      usage: GPUTextureUsage.STORAGE_BINDING | GPUTextureUsage.COPY_DST,
      label: key,
    });
    t = { texture, view: texture.createView() };
    s.textures.set(key, t);
    textureOfView.set(t.view, texture);
  }
  return t.view;
}

// Every scratch resource of a device goes at the runtime's shutdown.
atCloseGpu((g) => {
  const s = scratch.get(g.device);
  if (!s) return;
  for (const t of s.textures.values()) t.texture.destroy();
  s.dummy.destroy();
  scratch.delete(g.device);
});

/**
 * Destroys `owner`'s scratch textures (they are otherwise kept for reuse).
 * Call only when no recorded work still uses them (after a sync).
 */
export function releaseScratch(g: Gpu, owner: string): void {
  const s = scratch.get(g.device);
  if (!s) return;
  for (const [key, t] of s.textures) {
    if (key.startsWith(owner + ".")) {
      t.texture.destroy();
      s.textures.delete(key);
    }
  }
}
