/**
 * `pipelines/train/schedule.ts`, the SSD state machine on scripted monitor
 * readings, compared event by event and step by step with hand-derived
 * expectations:
 * - never stable; stable at once (sparse phases of their full length, each
 *   followed by one dense check that returns to sparse since the structure
 *   stays formed); a stable run broken before patience; the threshold itself
 *   counts as stable; nothing switches inside the tail;
 * - phases that follow the structure: a drift ends a sparse phase early and
 *   the structure must be found stable again; the guard rule's gap ends one;
 * - the endings: dense, refit (dense, like dense for the schedule), mixed
 *   (alternating sparse and dense steps, one event), sparse (no tail);
 * - `sparse` switches once at sparse_from and stays sparse (no tail),
 *   `dense` never switches and never asks for a check;
 * - resume: state → JSON → fromState after EVERY step of a scripted run
 *   (mid-sparse, mid-dense and mid-tail included) continues with the same
 *   phases and events as the uninterrupted run, under every rule and ending;
 * - config validation: every bad value is a ConfigError naming its flag.
 */
import assert from "node:assert/strict";
import { ConfigError } from "../../../core/errors.ts";
import {
  type Ending,
  type Phase,
  resolveSchedule,
  type ScheduleConfig,
  SsdSchedule,
  type SwitchEvent,
  type SwitchReason,
} from "../../../pipelines/train/schedule.ts";
import {
  EMPTY_READING,
  type MonitorReading,
  SWITCH_RULES,
} from "../../../pipelines/train/switch_rule.ts";

/** 100 steps, checks every 5, patience 2, sparse phases of at most 20, a dense tail of 10. */
const SMALL: Partial<ScheduleConfig> = {
  schedule: "ssd",
  switch_rule: "threshold",
  monitor_every: 5,
  stable_threshold: 0.9,
  drift_threshold: 0.5,
  patience: 2,
  sparse_steps: 20,
  dense_every: 0,
  ending: "dense",
  final_dense: 10,
  experts: 4,
};
const RUN = { steps: 100, d_ff: 16 };

/** The reading of each due check: (step, check index, phase of the check). */
type Script = (step: number, check: number, phase: Phase) => MonitorReading;
const sim = (similarity: number | null): MonitorReading => ({ ...EMPTY_READING, similarity });
/** A script giving similarity `x` at every check but the first (the baseline, null). */
const always = (x: number): Script => (_, c) => sim(c === 0 ? null : x);

/** Runs `s` from its current step to the end with `script`'s readings. */
function drive(s: SsdSchedule, script: Script, checks0 = 0) {
  const phases: Phase[] = [];
  const events: SwitchEvent[] = [];
  const checkSteps: number[] = [];
  let check = checks0;
  for (let step = s.step; step < s.config.steps; step++) {
    const due = s.needsMonitor(step);
    const plan = due ? s.next(step, script(step, check++, s.phase)) : s.next(step);
    if (due) checkSteps.push(step);
    phases.push(plan.phase);
    events.push(...plan.events);
  }
  return { phases, events, checkSteps, checks: check };
}

const sw = (
  from: Phase,
  to: Phase,
  step: number,
  reason: SwitchReason,
  similarity: number | null = null,
): SwitchEvent => ({ event: "switch", from, to, step, similarity, reason });

/** The phase of every step given sparse intervals [a, b). */
function phasesOf(steps: number, sparse: [number, number][]): Phase[] {
  return Array.from(
    { length: steps },
    (_, i) => sparse.some(([a, b]) => i >= a && i < b) ? "sparse" : "dense",
  );
}

Deno.test("SsdSchedule: never stable stays dense and checks every monitor_every steps", () => {
  const s = new SsdSchedule(SMALL, RUN);
  const r = drive(s, always(0.5));
  assert.deepEqual(r.events, []);
  assert.deepEqual(r.phases, phasesOf(100, []));
  // Checks at 5..85: none at step 0 and none in the tail [90, 100).
  assert.deepEqual(r.checkSteps, Array.from({ length: 17 }, (_, i) => 5 * (i + 1)));
  assert.ok(s.checks.every((c) => c.stable === 0 && c.phase === "dense"));
});

Deno.test("SsdSchedule: stable at once: full sparse phases, one dense check between them", () => {
  const s = new SsdSchedule(SMALL, RUN);
  const r = drive(s, always(0.95));
  // Check 5 is the baseline, 10 and 15 are stable → sparse [15, 35) (checks 20, 25, 30 see no
  // drift); dense at 35, the structure is formed: check 40 returns → [40, 60), 65 → [65, 85);
  // the tail starts at 90, so the dense steps 85..99 have no check.
  assert.deepEqual(r.events, [
    sw("dense", "sparse", 15, "stable", 0.95),
    sw("sparse", "dense", 35, "length"),
    sw("dense", "sparse", 40, "stable", 0.95),
    sw("sparse", "dense", 60, "length"),
    sw("dense", "sparse", 65, "stable", 0.95),
    sw("sparse", "dense", 85, "length"),
  ]);
  assert.deepEqual(r.phases, phasesOf(100, [[15, 35], [40, 60], [65, 85]]));
  assert.deepEqual(r.checkSteps, [5, 10, 15, 20, 25, 30, 40, 45, 50, 55, 65, 70, 75, 80]);
  assert.deepEqual(s.history, r.events);
  for (let i = 0; i < 100; i++) assert.equal(s.phaseAt(i), r.phases[i], `phaseAt(${i})`);
  assert.throws(() => s.phaseAt(100), /not planned/);
  // A sparse phase reaching the tail is cut there, by the tail.
  const late = drive(new SsdSchedule({ ...SMALL, sparse_steps: 30 }, RUN), always(0.95));
  assert.deepEqual(late.phases, phasesOf(100, [[15, 45], [50, 80], [85, 90]]));
  assert.deepEqual(late.events.at(-1), sw("sparse", "dense", 90, "final"));
});

Deno.test("SsdSchedule: a stable run broken before patience starts over", () => {
  const s = new SsdSchedule({ ...SMALL, patience: 3 }, RUN);
  const sims = [null, 0.95, 0.95, 0.5, 0.95, 0.95, 0.95];
  drive(s, (_, c) => sim(sims[c] ?? 0.1));
  assert.deepEqual(s.checks.slice(0, 7).map((c) => [c.step, c.stable]), [
    [5, 0],
    [10, 1],
    [15, 2],
    [20, 0],
    [25, 1],
    [30, 2],
    [35, 3],
  ]);
  // The later checks read 0.1: the phase started at 35 drifts at its first check (40).
  assert.deepEqual(s.history, [
    sw("dense", "sparse", 35, "stable", 0.95),
    sw("sparse", "dense", 40, "drift", 0.1),
  ]);
});

Deno.test("SsdSchedule: the threshold itself is stable; just below is not", () => {
  const at = drive(new SsdSchedule(SMALL, RUN), always(0.9));
  assert.deepEqual(at.events[0], sw("dense", "sparse", 15, "stable", 0.9));
  const below = drive(new SsdSchedule(SMALL, RUN), always(0.8999));
  assert.deepEqual(below.events, []);
});

Deno.test("SsdSchedule: no switch to sparse inside the tail", () => {
  // Stable only from check 85 on: one stable check, then the tail has no checks.
  const s = new SsdSchedule(SMALL, RUN);
  const r = drive(s, (step) => sim(step >= 85 ? 0.99 : 0.2));
  assert.deepEqual(r.events, []);
  assert.equal(r.checkSteps.at(-1), 85);
  for (let step = 90; step < 100; step++) assert.equal(s.needsMonitor(step), false);
  // With patience 1 the switch at 85 happens, and its sparse phase is cut to 5 steps.
  const p1 = drive(
    new SsdSchedule({ ...SMALL, patience: 1 }, RUN),
    (st) => sim(st >= 85 ? 0.99 : 0.2),
  );
  assert.deepEqual(p1.events, [
    sw("dense", "sparse", 85, "stable", 0.99),
    sw("sparse", "dense", 90, "final"),
  ]);
  assert.deepEqual(p1.phases, phasesOf(100, [[85, 90]]));
});

Deno.test("SsdSchedule: a drift ends a sparse phase early; the structure must be stable again", () => {
  // Stable from the start; the sparse phase [15, 35) sees 0.3 at its second check (25).
  const script: Script = (step, c, phase) =>
    sim(c === 0 ? null : phase === "sparse" && step === 25 ? 0.3 : 0.95);
  const s = new SsdSchedule(SMALL, RUN);
  const r = drive(s, script);
  // After the drift: checks 30 and 35 (patience 2) → sparse [35, 55) → check 60 → [60, 80),
  // check 85 → [85, 90), cut by the tail.
  assert.deepEqual(r.events.slice(0, 4), [
    sw("dense", "sparse", 15, "stable", 0.95),
    sw("sparse", "dense", 25, "drift", 0.3),
    sw("dense", "sparse", 35, "stable", 0.95),
    sw("sparse", "dense", 55, "length"),
  ]);
  assert.deepEqual(r.phases, phasesOf(100, [[15, 25], [35, 55], [60, 80], [85, 90]]));
  // A dense check after a full phase that sees a drift does not return; patience counts anew.
  const d2 = drive(
    new SsdSchedule(SMALL, RUN),
    (step, c) => sim(c === 0 ? null : step === 40 ? 0.2 : 0.95),
  );
  assert.deepEqual(d2.phases.slice(35, 55), phasesOf(100, [[50, 70]]).slice(35, 55));
  assert.deepEqual(d2.events[2], sw("dense", "sparse", 50, "stable", 0.95));
});

Deno.test("SsdSchedule: the guard rule refuses and ends sparse phases on the MoE gap", () => {
  const gap = (g: number | null, similarity: number | null = 0.9): MonitorReading => ({
    ...EMPTY_READING,
    similarity,
    moe_gap: g,
  });
  // Gap 10% until step 20, then 1%: stable at 25 and 30 → sparse [30, 50); its check at 40
  // reads 5% → guard ends it; checks 45 and 50 (1%) → sparse at 50.
  const script: Script = (step) => gap(step < 25 ? 0.1 : step === 40 ? 0.05 : 0.01);
  const s = new SsdSchedule({ ...SMALL, switch_rule: "guard", guard_tolerance: 0.03 }, RUN);
  const r = drive(s, script);
  assert.deepEqual(r.events.slice(0, 3), [
    sw("dense", "sparse", 30, "stable", 0.9),
    sw("sparse", "dense", 40, "guard", 0.9),
    sw("dense", "sparse", 50, "stable", 0.9),
  ]);
  assert.equal(s.checks.find((c) => c.step === 40)?.moe_gap, 0.05);
});

Deno.test("SsdSchedule: the plateau rule switches once the ARI stops rising", () => {
  const sims = [null, 0.4, 0.6, 0.7, 0.72, 0.73, 0.74];
  const s = new SsdSchedule({ ...SMALL, switch_rule: "plateau", plateau_tolerance: 0.05 }, RUN);
  const r = drive(s, (_, c) => sim(sims[c] ?? 0.75));
  // Rises at 15, 20, 25, 30: 0.2, 0.1, then 0.02 (stable 1) and 0.01 (stable 2).
  assert.deepEqual(r.events[0], sw("dense", "sparse", 30, "stable", 0.73));
});

Deno.test("SsdSchedule: endings: dense, refit, mixed and sparse", () => {
  const base = drive(new SsdSchedule(SMALL, RUN), always(0.95));
  const refit = drive(new SsdSchedule({ ...SMALL, ending: "refit" }, RUN), always(0.95));
  assert.deepEqual(refit.phases, base.phases);
  assert.deepEqual(refit.events, base.events);
  // Mixed: the tail [90, 100) alternates sparse and dense, sparse first, with one event.
  const ms = new SsdSchedule({ ...SMALL, ending: "mixed" }, RUN);
  const mixed = drive(ms, always(0.95));
  const tail = Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? "sparse" : "dense"));
  assert.deepEqual(mixed.phases, [...base.phases.slice(0, 90), ...tail]);
  assert.deepEqual(mixed.events, [...base.events, sw("dense", "sparse", 90, "final")]);
  for (let i = 0; i < 100; i++) assert.equal(ms.phaseAt(i), mixed.phases[i], `phaseAt(${i})`);
  // A mixed tail forms the experts even when nothing was stable before it.
  const never = drive(new SsdSchedule({ ...SMALL, ending: "mixed" }, RUN), always(0.1));
  assert.deepEqual(never.events, [sw("dense", "sparse", 90, "final")]);
  // Sparse: no tail; the phases go on to the end of the run.
  const sp = new SsdSchedule({ ...SMALL, ending: "sparse" }, RUN);
  const r = drive(sp, always(0.95));
  assert.equal(sp.tailStart, 100);
  assert.deepEqual(r.phases, phasesOf(100, [[15, 35], [40, 60], [65, 85], [90, 100]]));
  assert.equal(sp.phase, "sparse");
});

Deno.test("SsdSchedule: dense_every interleaves dense steps in sparse phases, without events", () => {
  const plain = drive(new SsdSchedule(SMALL, RUN), always(0.95));
  const s = new SsdSchedule({ ...SMALL, dense_every: 4 }, RUN);
  const r = drive(s, always(0.95));
  // The same phases and checks; within each sparse phase every 4th step (offsets 3, 7, ...) is dense.
  assert.deepEqual(r.events, plain.events);
  assert.deepEqual(r.checkSteps, plain.checkSteps);
  const want = plain.phases.map((p, i) => {
    const start = [15, 40, 65].findLast((a) => a <= i) ?? 0;
    return p === "sparse" && (i - start) % 4 === 3 ? "dense" : p;
  });
  assert.deepEqual(r.phases, want);
  assert.deepEqual(r.phases.slice(15, 23), [
    "sparse",
    "sparse",
    "sparse",
    "dense",
    "sparse",
    "sparse",
    "sparse",
    "dense",
  ]);
  for (let i = 0; i < 100; i++) assert.equal(s.phaseAt(i), r.phases[i], `phaseAt(${i})`);
  assert.throws(() => new SsdSchedule({ ...SMALL, dense_every: -1 }, RUN), /--dense-every/);
});

Deno.test("SsdSchedule: sparse switches once at sparse_from and stays sparse to the end", () => {
  const s = new SsdSchedule({ ...SMALL, schedule: "sparse", sparse_from: 30 }, RUN);
  const r = drive(s, () => {
    throw new Error("no check is due in a sparse schedule");
  });
  assert.deepEqual(r.events, [sw("dense", "sparse", 30, "static")]);
  assert.deepEqual(r.phases, phasesOf(100, [[30, 100]]));
  assert.deepEqual(r.checkSteps, []);
  const s0 = drive(new SsdSchedule({ schedule: "sparse", sparse_from: 0 }, RUN), always(0));
  assert.deepEqual(s0.events, [sw("dense", "sparse", 0, "static")]);
  assert.ok(s0.phases.every((p) => p === "sparse"));
});

Deno.test("SsdSchedule: dense never switches and never checks", () => {
  const r = drive(new SsdSchedule({ ...SMALL, schedule: "dense" }, RUN), always(1));
  assert.deepEqual(r.events, []);
  assert.deepEqual(r.checkSteps, []);
  assert.deepEqual(r.phases, phasesOf(100, []));
});

/** A script with a drift, a guard-relevant gap and a plateau, for the resume test. */
const MIXED_SCRIPT: Script = (step, c, phase) => ({
  similarity: c === 0 ? null : phase === "sparse" && step === 25 ? 0.3 : 0.9 + (c % 3) * 0.03,
  overlap: 0.85,
  coverage: 0.85,
  moe_gap: step === 50 ? 0.2 : 0.01,
});

Deno.test("SsdSchedule: resume after every step continues the run, under every rule and ending", () => {
  const endings: Ending[] = ["dense", "mixed", "sparse"];
  for (const switch_rule of SWITCH_RULES) {
    for (const ending of endings) {
      const dense_every = ending === "dense" ? 3 : 0;
      const config = { ...SMALL, switch_rule, ending, dense_every, plateau_tolerance: 0.05 };
      const full = drive(new SsdSchedule(config, RUN), MIXED_SCRIPT);
      assert.ok(full.events.length >= 2, `${switch_rule}/${ending} switches`);
      for (let cut = 0; cut <= 100; cut++) {
        const a = new SsdSchedule(config, RUN);
        let checks = 0;
        const head: Phase[] = [];
        const events: SwitchEvent[] = [];
        for (let step = 0; step < cut; step++) {
          const due = a.needsMonitor(step);
          const plan = due ? a.next(step, MIXED_SCRIPT(step, checks++, a.phase)) : a.next(step);
          head.push(plan.phase);
          events.push(...plan.events);
        }
        const b = SsdSchedule.fromState(JSON.parse(JSON.stringify(a.state())));
        const what = `${switch_rule}/${ending}, resume at ${cut}`;
        assert.equal(b.step, cut, what);
        assert.equal(b.phase, a.phase, what);
        assert.equal(b.sparseStepsLeft, a.sparseStepsLeft, what);
        const rest = drive(b, MIXED_SCRIPT, checks);
        assert.deepEqual([...head, ...rest.phases], full.phases, what);
        assert.deepEqual([...events, ...rest.events], full.events, what);
      }
    }
  }
});

Deno.test("SsdSchedule.fromState: a version-1 state (before the rules) still resumes", () => {
  const a = new SsdSchedule(SMALL, RUN);
  drive(a, always(0.95));
  const st = JSON.parse(JSON.stringify(a.state()));
  const { formed: _f, last_dense: _l, ...v1 } = { ...st, version: 1 };
  const b = SsdSchedule.fromState(v1);
  assert.equal(b.step, 100);
  assert.deepEqual(b.history, a.history);
});

Deno.test("SsdSchedule.fromState rejects inconsistent states", () => {
  const good = new SsdSchedule(SMALL, RUN).state();
  assert.throws(() => SsdSchedule.fromState({ ...good, step: 101 }), ConfigError);
  assert.throws(
    () => SsdSchedule.fromState({ ...good, phase: "sparse", sparse_end: 95 }),
    /does not fit/,
  );
  assert.throws(
    () => SsdSchedule.fromState({ ...good, config: { ...good.config, patience: 0 } }),
    /--patience/,
  );
  assert.throws(
    () => SsdSchedule.fromState({ ...good, version: 3 as 2 }),
    /unknown state format/,
  );
});

Deno.test("SsdSchedule.fromState with a replan: a longer run moves the tail", () => {
  const config = { ...SMALL, final_dense: null };
  // Planned for 100 steps (tail 10), stopped at 45 inside the sparse phase [40, 60).
  const a = new SsdSchedule(config, RUN);
  let checks = 0;
  for (let step = 0; step < 45; step++) {
    a.needsMonitor(step) ? a.next(step, always(0.97)(step, checks++, a.phase)) : a.next(step);
  }
  assert.equal(a.phase, "sparse");
  // Continued to 200 steps: the plan equals that of a run planned for 200 from the start.
  const b = SsdSchedule.fromState(JSON.parse(JSON.stringify(a.state())), {
    config,
    run: { steps: 200, d_ff: 16 },
  });
  assert.equal(b.config.final_dense, 20);
  assert.equal(b.tailStart, 180);
  const full = drive(new SsdSchedule(config, { steps: 200, d_ff: 16 }), always(0.97));
  const tail = drive(b, always(0.97), checks);
  assert.deepEqual(tail.phases, full.phases.slice(45));
  assert.deepEqual(b.history, full.events);
  // A sparse phase is cut where the shorter run's tail starts.
  const c = SsdSchedule.fromState(a.state(), { config, run: { steps: 55, d_ff: 16 } });
  assert.equal(c.sparseStepsLeft, 49 - 45);
  const same = SsdSchedule.fromState(a.state(), { config, run: RUN });
  assert.equal(same.sparseStepsLeft, a.sparseStepsLeft);
  assert.throws(
    () => SsdSchedule.fromState(a.state(), { config: { ...config, schedule: "sparse" }, run: RUN }),
    /--schedule ssd/,
  );
});

Deno.test("SsdSchedule.next: misuse throws", () => {
  const s = new SsdSchedule(SMALL, RUN);
  assert.throws(() => s.next(1), /expected step 0/);
  for (let i = 0; i < 5; i++) s.next(i);
  assert.throws(() => s.next(5), /check is due/);
  assert.throws(() => s.next(5, sim(NaN)), /finite/);
  s.next(5, sim(null));
  assert.throws(() => s.next(6, sim(0.5)), /no monitor check/);
});

Deno.test("resolveSchedule: the schedule's defaults and run-dependent ones", () => {
  const c = resolveSchedule({}, { steps: 2000, d_ff: 512 });
  assert.equal(c.schedule, "ssd");
  assert.equal(c.monitor_every, 100);
  assert.equal(c.patience, 2);
  assert.equal(c.final_dense, 200);
  assert.equal(c.sparse_from, 200);
  assert.equal(c.experts, 16);
  assert.equal(c.top_k, 4);
  assert.equal(c.fresh_margin, 0.01);
  assert.equal(c.switch_rule, "guard");
  assert.equal(c.guard_tolerance, 0.02);
  assert.equal(c.dense_every, 4);
  assert.equal(c.ending, "mixed");
  assert.equal(c.drift_threshold, 0.5);
  assert.equal(resolveSchedule({ experts: 2 }, { steps: 7, d_ff: 8 }).top_k, 1);
  assert.equal(resolveSchedule({}, { steps: 7, d_ff: 16 }).final_dense, 1);
});

Deno.test("resolveSchedule: bad values are ConfigErrors naming the flag", () => {
  const cases: [Partial<ScheduleConfig>, RegExp][] = [
    [{ monitor_every: -1 }, /--monitor-every/],
    [{ monitor_every: 0 }, /--monitor-every/],
    [{ monitor_every: 2.5 }, /--monitor-every/],
    [{ patience: 0 }, /--patience/],
    [{ sparse_steps: -500 }, /--sparse-steps/],
    [{ probe_tokens: 0 }, /--probe-tokens/],
    [{ final_dense: -1 }, /--final-dense/],
    [{ final_dense: 101 }, /--final-dense/],
    [{ sparse_from: -3 }, /--sparse-from/],
    [{ sparse_from: 101 }, /--sparse-from/],
    [{ stable_threshold: 1.5 }, /--stable-threshold/],
    [{ stable_threshold: NaN }, /--stable-threshold/],
    [{ drift_threshold: -0.5 }, /--drift-threshold/],
    [{ switch_rule: "oracle" as "plateau" }, /--switch-rule/],
    [{ ending: "late" as "dense" }, /--ending must be one of dense, refit, mixed, sparse/],
    [{ top_k: 5, experts: 4 }, /--top-k/],
    [{ top_k: 0 }, /--top-k/],
    [{ experts: 5 }, /--experts 5 does not divide d_ff 16/],
    [{ experts: 0 }, /--experts/],
    [{ fresh_margin: -0.01 }, /--fresh-margin/],
    [{ schedule: "mixed" as "ssd" }, /--schedule/],
  ];
  for (const [c, re] of cases) {
    assert.throws(() => new SsdSchedule({ ...SMALL, ...c }, RUN), (e: unknown) => {
      assert.ok(e instanceof ConfigError, `${JSON.stringify(c)}: ${e}`);
      assert.match(e.message, re);
      return true;
    });
  }
});
