/**
 * `pipelines/train/switch_rule.ts` on scripted monitor sequences: each rule
 * counts as stable exactly what its threshold says (the threshold itself
 * included), the plateau rule needs a previous reading and reads a fall as
 * stable, a missing reading is never stable, a sparse phase ends on drift
 * (and on the guard only under the guard rule), each rule asks for the
 * readings it uses, and bad knobs are ConfigErrors naming the flag.
 */
import assert from "node:assert/strict";
import { ConfigError } from "../../../core/errors.ts";
import { DEFAULT_SCHEDULE_CONFIG } from "../../../pipelines/train/schedule.ts";
import {
  checkRuleConfig,
  EMPTY_READING,
  endsSparse,
  isStable,
  type MonitorReading,
  readingsFor,
  type RuleConfig,
  SWITCH_RULES,
  type SwitchRule,
} from "../../../pipelines/train/switch_rule.ts";

const BASE: RuleConfig = {
  ...DEFAULT_SCHEDULE_CONFIG,
  stable_threshold: 0.9,
  plateau_tolerance: 0.05,
  overlap_threshold: 0.8,
  coverage_threshold: 0.7,
  guard_tolerance: 0.03,
  drift_threshold: 0.5,
};
const rule = (switch_rule: SwitchRule): RuleConfig => ({ ...BASE, switch_rule });
const R = (o: Partial<MonitorReading>): MonitorReading => ({ ...EMPTY_READING, ...o });

/** The stable flags of a scripted sequence of readings, each against the one before. */
function stableFlags(c: RuleConfig, seq: Partial<MonitorReading>[]): boolean[] {
  let prev: MonitorReading | null = null;
  return seq.map((o) => {
    const r = R(o);
    const s = isStable(c, r, prev);
    prev = r;
    return s;
  });
}

Deno.test("threshold: ARI at or above stable_threshold", () => {
  const sims = [null, 0.42, 0.72, 0.8999, 0.9, 0.95, 0.3];
  assert.deepEqual(
    stableFlags(rule("threshold"), sims.map((similarity) => ({ similarity }))),
    [false, false, false, false, true, true, false],
  );
});

Deno.test("plateau: the ARI rose less than the tolerance since the previous check", () => {
  // Rising fast, then flattening (+0.04, +0.01), then a fall (stable: it stopped rising).
  const sims = [null, 0.42, 0.72, 0.80, 0.84, 0.85, 0.70, 0.76];
  assert.deepEqual(
    stableFlags(rule("plateau"), sims.map((similarity) => ({ similarity }))),
    [false, false, false, false, true, true, true, false],
  );
  // The first reading has nothing to compare with.
  assert.equal(isStable(rule("plateau"), R({ similarity: 0.99 }), null), false);
  // A rise of exactly the tolerance is still rising.
  assert.equal(
    isStable(
      { ...rule("plateau"), plateau_tolerance: 0.25 },
      R({ similarity: 0.75 }),
      R({
        similarity: 0.5,
      }),
    ),
    false,
  );
});

Deno.test("overlap, coverage, guard: their own reading against their own threshold", () => {
  assert.deepEqual(
    stableFlags(rule("overlap"), [{ overlap: null }, { overlap: 0.79 }, { overlap: 0.8 }, {
      similarity: 1,
    }]),
    [false, false, true, false],
  );
  assert.deepEqual(
    stableFlags(rule("coverage"), [{ coverage: 0.5 }, { coverage: 0.7 }, { coverage: 0.9 }]),
    [false, true, true],
  );
  // The guard: the MoE within 3% of dense, either way (a negative gap: better as an MoE).
  assert.deepEqual(
    stableFlags(rule("guard"), [{ moe_gap: 0.1 }, { moe_gap: 0.031 }, { moe_gap: 0.03 }, {
      moe_gap: -0.01,
    }, { moe_gap: -0.04 }]),
    [false, false, true, true, false],
  );
  // No rule reads another rule's reading.
  assert.equal(
    isStable(rule("coverage"), R({ similarity: 1, overlap: 1, moe_gap: 0 }), null),
    false,
  );
});

Deno.test("endsSparse: drift under every rule, the guard only under the guard rule", () => {
  for (const name of SWITCH_RULES) {
    const c = rule(name);
    assert.equal(endsSparse(c, R({ similarity: 0.49 })), "drift", name);
    assert.equal(endsSparse(c, R({ similarity: 0.5 })), null, name);
    assert.equal(
      endsSparse(c, R({ similarity: 0.9, moe_gap: 0.2 })),
      name === "guard" ? "guard" : null,
    );
  }
  assert.equal(endsSparse(rule("guard"), R({ similarity: 0.9, moe_gap: 0.03 })), null);
  // Dense mode falling behind the MoE ends the phase too.
  assert.equal(endsSparse(rule("guard"), R({ similarity: 0.9, moe_gap: -0.031 })), "guard");
});

Deno.test("readingsFor: the similarity always, the probe readings only where a rule uses them", () => {
  assert.deepEqual(readingsFor("threshold", "dense"), ["similarity"]);
  assert.deepEqual(readingsFor("plateau", "dense"), ["similarity"]);
  assert.deepEqual(readingsFor("overlap", "dense"), ["similarity", "overlap"]);
  assert.deepEqual(readingsFor("coverage", "dense"), ["similarity", "coverage"]);
  assert.deepEqual(readingsFor("guard", "dense"), ["similarity", "moe_gap"]);
  assert.deepEqual(readingsFor("coverage", "sparse"), ["similarity"]);
  assert.deepEqual(readingsFor("guard", "sparse"), ["similarity", "moe_gap"]);
});

Deno.test("checkRuleConfig: bad knobs name their flag", () => {
  checkRuleConfig(BASE);
  const cases: [Partial<RuleConfig>, RegExp][] = [
    [{ switch_rule: "magic" as SwitchRule }, /--switch-rule must be one of threshold, plateau/],
    [{ stable_threshold: 1.1 }, /--stable-threshold/],
    [{ overlap_threshold: -0.1 }, /--overlap-threshold/],
    [{ coverage_threshold: NaN }, /--coverage-threshold/],
    [{ drift_threshold: 2 }, /--drift-threshold/],
    [{ plateau_tolerance: -1 }, /--plateau-tolerance/],
    [{ guard_tolerance: Infinity }, /--guard-tolerance/],
  ];
  for (const [o, re] of cases) {
    assert.throws(() => checkRuleConfig({ ...BASE, ...o }), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, re);
      return true;
    });
  }
});
