/**
 * The largest GPU buffers a training run needs, computed from its config
 * and checked against the adapter's limits before any data is loaded, the
 * model built or a file written: a batch or context that cannot fit fails
 * at once, in one line that names the limit and the largest value that
 * fits, instead of after gigabytes of host allocations or deep in a kernel.
 */
import { ConfigError } from "../../core/errors.ts";
import { bindingLimit, forwardTensorSizes } from "../checks.ts";
import { flagOf } from "../config.ts";
import type { TrainConfig } from "./config.ts";

/** The adapter limits a run's buffers must respect (bytes). */
export interface BufferLimits {
  /** Largest storage buffer one binding may see. */
  maxStorageBufferBindingSize: number;
  /** Largest buffer the device creates. */
  maxBufferSize: number;
}

/** One buffer a step allocates, by the sizes it depends on. */
interface BufferNeed {
  /** What it holds, for the message. */
  what: string;
  /** The flag whose value multiplies its size (the one to lower). */
  flag: "batch_size" | "eval_batch";
  /** Bytes for one sequence of that batch at context `T`. */
  perSequence(c: TrainConfig, T: number): number;
}

const F32 = 4;

/** Per sequence of a batch: the largest activations of a forward (and its backward). */
const PER_SEQUENCE: [string, keyof ReturnType<typeof forwardTensorSizes>][] = [
  ["logits (batch, ctx, vocab)", "logits"],
  ["attention scores (batch, heads, ctx, ctx)", "attention"],
  ["FFN activations (batch, ctx, d_ff)", "ffn"],
  ["attention input (batch, ctx, 3·d_model)", "qkv"],
];

// Training steps run batch_size sequences, evaluations eval_batch.
const NEEDS: BufferNeed[] = (["batch_size", "eval_batch"] as const).flatMap((flag) =>
  PER_SEQUENCE.map(([what, tensor]) => ({
    what: flag === "eval_batch" ? `evaluation ${what.replace("batch", "eval-batch")}` : what,
    flag,
    perSequence: (c: TrainConfig, T: number) => forwardTensorSizes(c, T)[tensor] * F32,
  }))
);

function fmtBytes(n: number): string {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) (n /= 1024), i++;
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/** The largest context at which one sequence of every need fits in `limit` bytes. */
function largestCtx(c: TrainConfig, limit: number): number {
  let lo = 0, hi = c.ctx;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (NEEDS.every((n) => n.perSequence(c, mid) <= limit)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * Throws a `ConfigError` when one of the run's buffers would exceed the
 * adapter's per-buffer limit (the smaller of the binding and buffer limits).
 */
export function checkBufferLimits(c: TrainConfig, limits: BufferLimits): void {
  const { bytes: limit, name: limitName } = bindingLimit(limits);
  for (const need of NEEDS) {
    const per = need.perSequence(c, c.ctx);
    const bytes = per * c[need.flag];
    if (bytes <= limit) continue;
    const fitsBatch = Math.floor(limit / per);
    const fix = fitsBatch >= 1
      ? `${flagOf(need.flag)} ${fitsBatch} or less fits`
      : `no batch fits at --ctx ${c.ctx}; --ctx ${largestCtx(c, limit)} or less does`;
    throw new ConfigError(
      `${flagOf(need.flag)} ${c[need.flag]} with --ctx ${c.ctx} needs ${fmtBytes(bytes)} for the ` +
        `${need.what}, over this adapter's ${limitName} of ${fmtBytes(limit)}: ${fix}`,
    );
  }
}
