/**
 * The MoE view of a GPT's FFNs: how many experts, how many a
 * token uses, which router, and per layer the permutation that put each
 * original neuron at its stored position (expert e owns stored positions
 * [e·s, (e+1)·s), s = d_ff / E). Saved as `ssd.moe`.
 */
import { CheckpointError, ConfigError } from "../errors.ts";
import type { GPTConfig } from "./config.ts";

/** `ssd.moe` of an MoE checkpoint. */
export interface MoeLayout {
  /** Experts per FFN layer (divides d_ff). */
  experts: number;
  /** Experts a token uses by default (1..experts). */
  top_k: number;
  /** How the router was built: centroids of the clusters, or trained on activations. */
  router: "centroid" | "mlp";
  /** How neurons were clustered: c_fc rows (`param`) or co-activation (`coact`). */
  method: "param" | "coact";
  /** Per layer, `perm[i]` = stored position of original neuron i. */
  perms: number[][];
}

/** Checkpoint name of layer i's router weight [E, d_model]. */
export function routerName(layer: number): string {
  return `transformer.h.${layer}.mlp.router.weight`;
}

/** Checks a parsed `ssd.moe` against the model config; throws one-line `CheckpointError`s. */
export function validateMoeLayout(
  raw: Record<string, unknown>,
  c: GPTConfig,
  path: string,
): MoeLayout {
  const bad = (what: string): never => {
    throw new CheckpointError(`Checkpoint ${path} has an invalid ssd.moe: ${what}`);
  };
  const E = raw.experts;
  if (typeof E !== "number" || !Number.isInteger(E) || E < 1 || c.d_ff % E !== 0) {
    bad(`experts must be a positive integer dividing d_ff ${c.d_ff}, got ${E}`);
  }
  const k = raw.top_k;
  if (typeof k !== "number" || !Number.isInteger(k) || k < 1 || k > (E as number)) {
    bad(`top_k must be an integer in 1..${E}, got ${k}`);
  }
  if (raw.router !== "centroid" && raw.router !== "mlp") bad(`unknown router ${raw.router}`);
  if (raw.method !== "param" && raw.method !== "coact") bad(`unknown method ${raw.method}`);
  const perms = raw.perms;
  if (!Array.isArray(perms) || perms.length !== c.n_layer) {
    bad(`perms must list one permutation per layer (${c.n_layer})`);
  }
  (perms as unknown[]).forEach((p, i) => {
    if (!Array.isArray(p) || p.length !== c.d_ff) bad(`perms[${i}] must have ${c.d_ff} entries`);
    const seen = new Uint8Array(c.d_ff);
    for (const v of p as unknown[]) {
      if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v >= c.d_ff || seen[v]) {
        bad(`perms[${i}] is not a permutation of 0..${c.d_ff - 1}`);
      }
      seen[v as number] = 1;
    }
  });
  return raw as unknown as MoeLayout;
}

/**
 * Experts per token when none is given: a quarter of the experts
 * (E/4), at least 1. Shared by training, moefy, profile and the demo.
 */
export function defaultTopK(experts: number): number {
  return Math.max(1, Math.floor(experts / 4));
}

/**
 * The one check of an expert split, in the flags' words: `E` experts must
 * divide `d_ff` into equal experts, and each `k` (experts per token) must be
 * in 1..E. `k` may be omitted where only the split is known yet.
 *
 * @throws ConfigError naming the flag, the value and what would fit
 */
export function checkExperts(E: number, k: number | readonly number[] | null, d_ff: number): void {
  if (!Number.isSafeInteger(E) || E < 1 || d_ff % E !== 0) {
    throw new ConfigError(
      `--experts ${E} does not divide d_ff ${d_ff}: choose a divisor of ${d_ff}`,
    );
  }
  for (const kk of k === null ? [] : typeof k === "number" ? [k] : k) {
    if (!Number.isSafeInteger(kk) || kk < 1 || kk > E) {
      throw new ConfigError(
        `--top-k must be in 1..${E} (the experts per layer), got ${kk}`,
      );
    }
  }
}
