/**
 * The switch rules of the SSD schedule: when a dense phase counts as
 * stable enough to train sparsely, and when a sparse phase must end. Pure
 * functions of the monitor's readings, so each rule can be tested on a
 * scripted sequence and compared with the others on the same run.
 *
 * A reading holds what one monitor check measured; a rule needs only some of
 * it (`readingsFor`), and the monitor computes only that, since the probe
 * readings cost a forward pass over the probe tokens:
 *
 *   - `threshold`: partition similarity (ARI with the previous check's
 *     partition) at or above `stable_threshold` — the first rule; it crosses
 *     late and at a point that depends on the run's length;
 *   - `plateau`: the similarity has stopped rising: its rise since the
 *     previous check is below `plateau_tolerance`;
 *   - `overlap`: the oracle top-k expert sets of the probe tokens (under the
 *     previous partition) agree with the previous check's on at least
 *     `overlap_threshold` of their experts;
 *   - `coverage`: the centroid router of the partition built now keeps at
 *     least `coverage_threshold` of the probe's activation mass at top-k
 *     (how much an MoE built now would lose);
 *   - `guard`: the MoE built now is within `guard_tolerance` (relative) of the
 *     dense model's loss on the probe. The guard is symmetric: in a sparse
 *     phase the model gets better as an MoE and worse dense, and a dense
 *     mode that falls behind by more than the tolerance ends the phase as
 *     surely as an MoE that falls behind.
 *
 * A sparse phase ends after `sparse_steps`, or earlier at a check that sees
 * the structure drift (the partition found now agrees with the one the phase
 * trains with on less than `drift_threshold` ARI), or, under the guard rule,
 * when the MoE and the dense model are more than `guard_tolerance` apart.
 */
import { ConfigError } from "../../core/errors.ts";

/** The rule that decides a switch to sparse. */
export type SwitchRule = "threshold" | "plateau" | "overlap" | "coverage" | "guard";

/** Every rule, in the order the help lists them. */
export const SWITCH_RULES: readonly SwitchRule[] = Object.freeze([
  "threshold",
  "plateau",
  "overlap",
  "coverage",
  "guard",
]);

/** What one monitor check measured; null where not measured (or nothing to compare with). */
export interface MonitorReading {
  /** Mean ARI over layers with the reference partition. */
  similarity: number | null;
  /** Mean oracle top-k overlap with the previous check's sets, on the probe. */
  overlap: number | null;
  /** Mean share of activation mass the centroid router keeps at top-k, on the probe. */
  coverage: number | null;
  /** (MoE loss at top-k − dense loss) / dense loss on the probe. */
  moe_gap: number | null;
}

/** A reading with nothing measured. */
export const EMPTY_READING: Readonly<MonitorReading> = Object.freeze({
  similarity: null,
  overlap: null,
  coverage: null,
  moe_gap: null,
});

/** The rules' knobs (a slice of the schedule config). */
export interface RuleConfig {
  /** Which rule switches to sparse. */
  switch_rule: SwitchRule;
  /** `threshold`: ARI at or above which a check counts as stable. */
  stable_threshold: number;
  /** `plateau`: a rise of the ARI since the previous check below this counts as stable. */
  plateau_tolerance: number;
  /** `overlap`: oracle top-k overlap at or above which a check counts as stable. */
  overlap_threshold: number;
  /** `coverage`: router coverage at or above which a check counts as stable. */
  coverage_threshold: number;
  /** `guard`: relative MoE–dense loss gap (either way) at or below which a check counts as stable, and above which a sparse phase ends. */
  guard_tolerance: number;
  /** In a sparse phase, an ARI with the phase's partition below this ends the phase. */
  drift_threshold: number;
}

/** Which readings a check needs, by phase. */
export function readingsFor(rule: SwitchRule, phase: "dense" | "sparse"): (keyof MonitorReading)[] {
  // The ARI is always measured: it also finds the partition a switch applies.
  if (phase === "sparse") return rule === "guard" ? ["similarity", "moe_gap"] : ["similarity"];
  switch (rule) {
    case "threshold":
    case "plateau":
      return ["similarity"];
    case "overlap":
      return ["similarity", "overlap"];
    case "coverage":
      return ["similarity", "coverage"];
    case "guard":
      return ["similarity", "moe_gap"];
  }
}

/**
 * Whether a dense-phase check counts as stable under `c.switch_rule`;
 * `previous` is the previous dense check's reading (null: none).
 */
export function isStable(
  c: RuleConfig,
  r: MonitorReading,
  previous: MonitorReading | null,
): boolean {
  switch (c.switch_rule) {
    case "threshold":
      return r.similarity !== null && r.similarity >= c.stable_threshold;
    case "plateau": {
      const before = previous?.similarity ?? null;
      return r.similarity !== null && before !== null &&
        r.similarity - before < c.plateau_tolerance;
    }
    case "overlap":
      return r.overlap !== null && r.overlap >= c.overlap_threshold;
    case "coverage":
      return r.coverage !== null && r.coverage >= c.coverage_threshold;
    case "guard":
      return r.moe_gap !== null && Math.abs(r.moe_gap) <= c.guard_tolerance;
  }
}

/** Why a sparse-phase check ends the phase, or null when it goes on. */
export function endsSparse(c: RuleConfig, r: MonitorReading): "drift" | "guard" | null {
  if (r.similarity !== null && r.similarity < c.drift_threshold) return "drift";
  if (c.switch_rule === "guard" && r.moe_gap !== null && Math.abs(r.moe_gap) > c.guard_tolerance) {
    return "guard";
  }
  return null;
}

/** Checks the rules' knobs; every error names its flag. */
export function checkRuleConfig(c: RuleConfig): void {
  if (!SWITCH_RULES.includes(c.switch_rule)) {
    throw new ConfigError(
      `--switch-rule must be one of ${SWITCH_RULES.join(", ")}, got ${c.switch_rule}`,
    );
  }
  const unit = [
    ["stable_threshold", "--stable-threshold"],
    ["overlap_threshold", "--overlap-threshold"],
    ["coverage_threshold", "--coverage-threshold"],
    ["drift_threshold", "--drift-threshold"],
  ] as const;
  for (const [k, flag] of unit) {
    const v = c[k];
    if (typeof v !== "number" || !(v >= 0 && v <= 1)) {
      throw new ConfigError(`${flag} must be in [0, 1], got ${v}`);
    }
  }
  for (
    const [k, flag] of [["plateau_tolerance", "--plateau-tolerance"], [
      "guard_tolerance",
      "--guard-tolerance",
    ]] as const
  ) {
    const v = c[k];
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
      throw new ConfigError(`${flag} must be a number >= 0, got ${v}`);
    }
  }
}
