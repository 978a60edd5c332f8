/**
 * Share of step time per kernel family (matmul, attention, layernorm,
 * other) from per-kernel GPU timestamps, for `ssd train --profile`.
 */
import type { KernelTimes } from "../../gpu/recorder.ts";

/** Families reported, in order. */
export const FAMILIES = ["matmul", "attention", "layernorm", "other"] as const;

/** Milliseconds per family (summed over the profiled steps) and their shares. */
export interface ProfileShares {
  /** GPU ms per family. */
  ms: Record<(typeof FAMILIES)[number], number>;
  /** Fraction of the total per family. */
  share: Record<(typeof FAMILIES)[number], number>;
  /** Per-kernel ms, for the curious. */
  kernels: Record<string, number>;
}

function familyOf(kernel: string): (typeof FAMILIES)[number] {
  const fam = kernel.split(".")[0];
  return fam === "matmul" || fam === "attention" || fam === "layernorm" ? fam : "other";
}

/** Folds kernel times into family totals, adding to `prev` when given. */
export function kernelFamilyShares(times: KernelTimes, prev: ProfileShares | null): ProfileShares {
  const ms = prev ? { ...prev.ms } : { matmul: 0, attention: 0, layernorm: 0, other: 0 };
  const kernels = prev ? { ...prev.kernels } : {};
  for (const [name, t] of times) {
    ms[familyOf(name)] += t.ms;
    kernels[name] = (kernels[name] ?? 0) + t.ms;
  }
  const total = FAMILIES.reduce((s, f) => s + ms[f], 0) || 1;
  const share = { matmul: 0, attention: 0, layernorm: 0, other: 0 };
  for (const f of FAMILIES) share[f] = ms[f] / total;
  return { ms, share, kernels };
}
