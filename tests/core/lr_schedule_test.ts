import assert from "node:assert/strict";
import {
  checkLrSchedule,
  extendLrSchedule,
  lrAt,
  type LrSchedule,
} from "../../core/lr_schedule.ts";
import { ConfigError } from "../../core/errors.ts";

const S: LrSchedule = { maxLr: 6e-4, minLr: 6e-5, warmup: 10, total: 110 };

function close(a: number, e: number, what: string): void {
  assert.ok(Math.abs(a - e) <= 1e-15 + 1e-12 * Math.abs(e), `${what}: got ${a}, expected ${e}`);
}

Deno.test("lrAt() warms up linearly from maxLr / warmup to maxLr", () => {
  close(lrAt(0, S), 6e-5, "step 0");
  close(lrAt(4, S), 3e-4, "step 4");
  close(lrAt(9, S), 6e-4, "last warmup step");
  for (let t = 1; t < S.warmup; t++) assert.ok(lrAt(t, S) > lrAt(t - 1, S), `rises at ${t}`);
});

Deno.test("lrAt() decays by a half cosine from maxLr to minLr", () => {
  close(lrAt(10, S), 6e-4, "start of decay");
  close(lrAt(60, S), (6e-4 + 6e-5) / 2, "midpoint");
  // r = 0.25: minLr + (1 + cos(pi/4)) / 2 * (maxLr - minLr)
  close(lrAt(35, S), 6e-5 + 0.5 * (1 + Math.SQRT1_2) * 5.4e-4, "quarter");
  close(lrAt(109, S), 6e-5 + 0.5 * (1 + Math.cos(Math.PI * 0.99)) * 5.4e-4, "last decay step");
  for (let t = 11; t <= 110; t++) assert.ok(lrAt(t, S) < lrAt(t - 1, S), `falls at ${t}`);
});

Deno.test("lrAt() stays at minLr from total on", () => {
  for (const t of [110, 111, 1_000_000]) assert.equal(lrAt(t, S), 6e-5);
});

Deno.test("lrAt() matches nanoGPT's GPT-2 schedule at sample steps", () => {
  const gpt2: LrSchedule = { maxLr: 6e-4, minLr: 6e-5, warmup: 2000, total: 600000 };
  close(lrAt(999, gpt2), 3e-4, "mid warmup");
  close(lrAt(2000, gpt2), 6e-4, "peak");
  close(lrAt(301000, gpt2), 3.3e-4, "half decay");
  assert.equal(lrAt(600000, gpt2), 6e-5);
});

Deno.test("lrAt() handles no warmup and warmup == total", () => {
  const noWarm = { maxLr: 1, minLr: 0, warmup: 0, total: 4 };
  assert.deepEqual([0, 1, 2, 3, 4].map((t) => +lrAt(t, noWarm).toFixed(12)), [
    1,
    +(0.5 * (1 + Math.cos(Math.PI / 4))).toFixed(12),
    0.5,
    +(0.5 * (1 + Math.cos((3 * Math.PI) / 4))).toFixed(12),
    0,
  ]);
  const flat = { maxLr: 1, minLr: 0.1, warmup: 2, total: 2 };
  assert.deepEqual([0, 1, 2, 3].map((t) => lrAt(t, flat)), [0.5, 1, 0.1, 0.1]);
  const constant = { maxLr: 0.3, minLr: 0.3, warmup: 0, total: 5 };
  for (let t = 0; t < 8; t++) close(lrAt(t, constant), 0.3, `constant at ${t}`);
});

Deno.test("the schedule state is plain JSON: a round trip gives the same rates", () => {
  const back = JSON.parse(JSON.stringify(S)) as LrSchedule;
  for (let t = 0; t < 120; t += 7) assert.equal(lrAt(t, back), lrAt(t, S));
});

Deno.test("bad schedules throw ConfigError and bad steps RangeError", () => {
  const bad: Partial<LrSchedule>[] = [
    { maxLr: -1 },
    { minLr: NaN },
    { minLr: 1e-3 },
    { warmup: 1.5 },
    { warmup: -1 },
    { total: 5 },
    { maxLr: Infinity },
  ];
  for (const b of bad) {
    assert.throws(() => checkLrSchedule({ ...S, ...b }), ConfigError, JSON.stringify(b));
    assert.throws(() => lrAt(0, { ...S, ...b }), ConfigError);
  }
  assert.throws(() => checkLrSchedule({ ...S, minLr: 1 }), /minLr must not exceed maxLr/);
  assert.throws(() => lrAt(-1, S), RangeError);
  assert.throws(() => lrAt(2.5, S), RangeError);
  assert.equal(checkLrSchedule(S), S);
});

Deno.test("extendLrSchedule() keeps past rates and decays from the current rate to the new end", () => {
  const e = extendLrSchedule(S, 60, 210);
  for (let t = 0; t < 60; t++) assert.equal(lrAt(t, e), lrAt(t, S), `step ${t} unchanged`);
  close(lrAt(60, e), lrAt(60, S), "no jump at the resume step");
  close(lrAt(135, e), 6e-5 + 0.5 * (lrAt(60, S) - 6e-5), "midpoint of the new decay");
  for (let t = 61; t <= 210; t++) assert.ok(lrAt(t, e) < lrAt(t - 1, e), `falls at ${t}`);
  assert.equal(lrAt(210, e), 6e-5);
  // A finished run continues at the floor; JSON round trip keeps the plan.
  const done = extendLrSchedule(S, 110, 200);
  assert.equal(lrAt(150, done), 6e-5);
  const again = JSON.parse(JSON.stringify(e));
  assert.equal(lrAt(100, again), lrAt(100, e));
  // Extended twice: every rate before the second extension is kept too.
  const twice = extendLrSchedule(e, 150, 300);
  for (let t = 0; t < 150; t++) assert.equal(lrAt(t, twice), lrAt(t, e), `step ${t} kept`);
  // During warmup only the end moves; the same length changes nothing.
  assert.deepEqual(extendLrSchedule(S, 5, 210), { ...S, total: 210 });
  assert.equal(extendLrSchedule(S, 60, 110), S);
  assert.throws(() => extendLrSchedule(S, 60, 50), RangeError);
  assert.throws(
    () => checkLrSchedule({ ...S, continued: { step: 5, lr: 1e-4, schedule: S } }),
    /continued.step/,
  );
});
