/**
 * @module
 * Optimizer: AdamW with a fused GPU update, and global-norm gradient
 * clipping whose factor stays on the GPU.
 */
export {
  AdamW,
  type AdamWOptions,
  type AdamWState,
  DEFAULT_ADAMW_OPTIONS,
  defaultNoDecay,
} from "./adamw.ts";
export { type GradClip, gradClip, gradNorm } from "./clip.ts";
