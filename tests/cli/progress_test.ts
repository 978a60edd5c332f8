/**
 * The progress display (cli/_progress.ts) with a fake clock and a fake
 * stderr: lines within 80 columns whatever the content, the terminal's
 * throttled redraw against the log's 5% / 15 s cadence, the ETA only after
 * the warm-up, log lines above the redrawn line, and silence when quiet.
 */
import assert from "node:assert/strict";
import { Progress, type ProgressOptions } from "../../cli/_progress.ts";
import { columns, fmtEta, truncate, wrap } from "../../cli/_columns.ts";

/** A display writing into `out`, with a clock the test moves (`clock.t`, ms). */
function fake(tty: boolean, opts: ProgressOptions = {}) {
  const clock = { t: 0 };
  const out: string[] = [];
  const progress = new Progress({
    ...opts,
    io: { write: (s) => void out.push(s), tty, now: () => clock.t },
  });
  return { progress, clock, out, text: () => out.join("") };
}

/** The terminal's redraw: back to the line's start, clear the line. */
const REDRAW = "\r\x1b[2K";

/** The lines a terminal would show or a log would hold: split at newlines and redraws. */
function lines(text: string): string[] {
  return text.replaceAll(REDRAW, "\n").split("\n").filter((l) => l !== "");
}

/** Whether `text` holds a control character other than a newline. */
function hasControl(text: string): boolean {
  return [...text].some((c) => c !== "\n" && (c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f));
}

const LONG_PATH = "/very/long/folder/".repeat(12) + "ckpt-100.safetensors";
const nasty = (i: number) => [
  `step ${i}/100`,
  `loss 3.1415`,
  `file ${LONG_PATH}`,
  "宽字符".repeat(30),
  "\x1b[31mred\x1b[0m\r\ttab",
  "x".repeat(200),
];

for (const tty of [true, false]) {
  const kind = tty ? "terminal" : "log";
  Deno.test(`progress (${kind}): every line is at most 80 columns, whatever the content`, () => {
    const { progress, clock, text } = fake(tty, { warmup: 1 });
    for (let i = 1; i <= 100; i++) {
      clock.t += 1000;
      progress.update(i, 100, nasty(i));
      if (i % 10 === 0) progress.log(`config ${JSON.stringify({ path: LONG_PATH, i })}`);
      if (i === 50) progress.log("宽".repeat(100) + "\nsecond line " + "y".repeat(150));
    }
    const all = lines(text());
    assert.ok(all.length > 10);
    for (const l of all) assert.ok(columns(l) <= 80, `${columns(l)} columns: ${l}`);
    // Content never smuggles control codes through (only the display's own redraw).
    assert.equal(hasControl(text().replaceAll(REDRAW, "")), false);
    // The first field and the ETA survive; fields that do not fit are dropped.
    const mid = all.find((l) => l.startsWith("step 10/100 "));
    assert.equal(mid, "step 10/100  loss 3.1415  ETA 1m30s");
    // A long log line is wrapped, not cut: all of it is there.
    const joined = all.map((l) => l.replace(/^ {2}/, "")).join("");
    assert.ok(joined.includes(JSON.stringify({ path: LONG_PATH, i: 50 })));
    const ys = all.filter((l) => /^second line|^ +y+$/.test(l)).join("");
    assert.equal(ys.split("y").length - 1, 150);
  });

  Deno.test(`progress (${kind}): a single field too wide is cut to 80 columns with ...`, () => {
    const { progress, text } = fake(tty);
    progress.update(1, 10, ["z".repeat(300)]);
    progress.finish();
    const [l] = lines(text());
    assert.equal(l, "z".repeat(77) + "...");
  });
}

Deno.test("progress (terminal): one line redrawn at most ~10 times a second, ended by a newline", () => {
  const { progress, clock, out, text } = fake(true);
  // 1000 updates 2 ms apart: 2 seconds of work.
  for (let i = 1; i <= 999; i++) {
    progress.update(i, 1000, [`step ${i}/1000`]);
    clock.t += 2;
  }
  const redraws = out.filter((s) => s.startsWith(REDRAW)).length;
  assert.ok(redraws >= 19 && redraws <= 21, `${redraws} redraws in 2 s`);
  assert.equal(out.every((s) => s.startsWith(REDRAW)), true);
  assert.doesNotMatch(text(), /\n/, "no newline while the work runs");
  progress.update(1000, 1000, ["step 1000/1000"]);
  assert.ok(text().endsWith(`${REDRAW}step 1000/1000\n`));
  progress.finish();
  assert.match(text(), /step 1000\/1000\n$/, "finish after the end adds nothing");
});

Deno.test("progress (terminal): finish draws the held-back update, then the newline", () => {
  const { progress, clock, out } = fake(true);
  progress.update(1, 100, ["step 1"]);
  clock.t += 10;
  progress.update(2, 100, ["step 2"]); // within 100 ms: held back
  assert.equal(out.length, 1);
  progress.finish();
  assert.deepEqual(out.slice(1), [REDRAW + "step 2", "\n"]);
});

Deno.test("progress (log): a line at the first update, every 5% and at the end; no \\r or escapes", () => {
  const { progress, clock, text } = fake(false);
  for (let i = 1; i <= 1000; i++) {
    clock.t += 5; // 5 s in all: the 15 s rule never fires
    progress.update(i, 1000, [`step ${i}/1000`]);
  }
  const got = text().split("\n").filter((l) => l !== "").map((l) => Number(/\d+/.exec(l)![0]));
  const want = [1, ...Array.from({ length: 20 }, (_, k) => 50 * (k + 1))];
  assert.deepEqual(got, want);
  assert.equal(hasControl(text()), false, "a \\r or escape code in a log");
});

Deno.test("progress (log): slow work prints every 15 s between the 5% marks, and the last update at the end", () => {
  const { progress, clock, text } = fake(false);
  // 1000 steps of 1 s: 5% (50 steps) takes 50 s, so the 15 s rule decides.
  for (let i = 1; i <= 120; i++) {
    clock.t += 1000;
    progress.update(i, 1000, [`step ${i}/1000`]);
  }
  progress.finish();
  const got = text().split("\n").filter((l) => l !== "").map((l) => Number(/\d+/.exec(l)![0]));
  assert.deepEqual(got, [1, 16, 31, 46, 50, 65, 80, 95, 100, 115, 120]);
});

Deno.test("progress: the ETA starts after the warm-up updates, from their end", () => {
  const { progress, clock, text } = fake(false, { warmup: 2 });
  const at = (t: number, done: number) => {
    clock.t = t;
    progress.update(done, 20, [`step ${done}`]);
  };
  // Step 1 compiles shaders for 60 s; then 1 step/s (and each step is 5%: every one printed).
  at(60_000, 1);
  at(61_000, 2);
  at(62_000, 3);
  at(65_000, 6);
  const got = text().split("\n").filter((l) => l !== "");
  assert.deepEqual(got, ["step 1", "step 2", "step 3  ETA 17s", "step 6  ETA 14s"]);
});

Deno.test("progress: a caller's warm-up count, and the rate given to the fields", () => {
  const { progress, clock, text } = fake(false, { warmup: 4 });
  const rates: (number | null)[] = [];
  for (let i = 1; i <= 6; i++) {
    clock.t = i === 1 ? 30_000 : 30_000 + (i - 1) * 500;
    progress.update(i * 10, 60, (rate) => {
      rates.push(rate);
      return [`eval ${i * 10}/60`, rate === null ? "" : `${rate.toFixed(0)} tok/s`];
    });
  }
  assert.deepEqual(rates, [null, null, null, null, 20, 20]);
  const got = text().split("\n").filter((l) => l !== "");
  assert.equal(got[3], "eval 40/60");
  assert.equal(got[4], "eval 50/60  20 tok/s  ETA 1s");
  // The last line is the end: no ETA.
  assert.equal(got[5], "eval 60/60  20 tok/s");
});

Deno.test("progress (terminal): a log line goes above the redrawn line, which is drawn again", () => {
  const { progress, clock, out } = fake(true);
  progress.update(3, 10, ["step 3/10"]);
  clock.t += 500;
  progress.log("step 3: dense -> sparse");
  assert.deepEqual(out, [
    REDRAW + "step 3/10",
    REDRAW + "step 3: dense -> sparse\n",
    REDRAW + "step 3/10",
  ]);
  // With no line drawn, a log line is just a line.
  const idle = fake(true);
  idle.progress.log("saved runs/x/final.safetensors");
  assert.deepEqual(idle.out, ["saved runs/x/final.safetensors\n"]);
});

Deno.test("progress: stages without a total, redrawn on a terminal, at most one per 15 s in a log", () => {
  const term = fake(true);
  term.progress.stage("bench: dense: prefill");
  term.progress.stage("bench: dense: decode at batch 1");
  term.progress.finish();
  assert.equal(
    term.out.join(""),
    `${REDRAW}bench: dense: prefill${REDRAW}bench: dense: decode at batch 1\n`,
  );
  const log = fake(false);
  for (const [t, what] of [[0, "a"], [5_000, "b"], [16_000, "c"], [20_000, "d"]] as const) {
    log.clock.t = t;
    log.progress.stage(what);
  }
  log.progress.finish();
  assert.equal(log.text(), "a\nc\n");
});

for (const tty of [true, false]) {
  Deno.test(`progress (${tty ? "terminal" : "log"}): quiet writes nothing but warnings`, () => {
    const { progress, clock, out } = fake(tty, { quiet: true });
    for (let i = 1; i <= 50; i++) {
      clock.t += 1000;
      progress.update(i, 50, [`step ${i}/50`]);
      progress.log(`log ${i}`);
      progress.stage(`stage ${i}`);
    }
    progress.finish();
    assert.deepEqual(out, []);
    progress.warn("ssd: SIGINT: stopping");
    assert.deepEqual(out, ["ssd: SIGINT: stopping\n"]);
  });
}

Deno.test("progress: a terminal narrower than 80 columns gets narrower lines", () => {
  const out: string[] = [];
  const progress = new Progress({
    io: { write: (s) => void out.push(s), tty: true, now: () => 0, columns: 40 },
  });
  progress.update(1, 2, ["x".repeat(60)]);
  assert.equal(out[0], REDRAW + "x".repeat(37) + "...");
});

Deno.test("columns: ETA format, cutting and wrapping by terminal columns", () => {
  assert.equal(fmtEta(245), "4m05s");
  assert.equal(fmtEta(59.6), "1m00s");
  assert.equal(fmtEta(7), "7s");
  assert.equal(fmtEta(3725), "1h02m");
  assert.equal(fmtEta(Infinity), "?");
  assert.equal(columns("宽a\u0301"), 3);
  assert.equal(truncate("宽".repeat(50), 10), "宽宽宽...");
  const json = JSON.stringify({ a: "x".repeat(30), b: "y".repeat(30), c: "z".repeat(30) });
  const w = wrap(json, 40);
  assert.ok(w.every((l) => columns(l) <= 40), w.join("\n"));
  assert.equal(w.map((l) => l.trim()).join(""), json);
  assert.ok(w[0].endsWith(","), "breaks after a comma");
});
