/**
 * The one progress display of the long-running commands (train, demo, eval,
 * profile, moefy, bench), on stderr only, never stdout:
 *
 * - on a terminal: one line redrawn in place (`\r`, clear line) at most
 *   every 100 ms, ended with a newline when the work is done;
 * - in a log or pipe: plain lines, no `\r` and no escape codes, at the first
 *   update, then whenever another 5% of the work is done or 15 s have passed,
 *   and at the end;
 * - quiet (`--json`): nothing but warnings, so that stdout stays one JSON
 *   document and stderr stays empty on success.
 *
 * Every line fits in 80 columns: fields the caller lists last are dropped
 * first, and what still does not fit is cut. Log lines (`log`) are wrapped
 * rather than cut, and on a terminal they are written above the redrawn
 * line instead of through it. The ETA is measured from the `warmup`-th
 * update on, so that the shader compilation and warm-up of the first ones
 * do not distort it.
 */
import { columns, fmtEta, MAX_COLUMNS, sanitize, truncate, wrap } from "./_columns.ts";

/** Least time between two redraws of the terminal line, ms. */
export const REDRAW_MS = 100;
/** Most time between two plain lines while updates come, ms. */
export const PLAIN_EVERY_MS = 15_000;
/** Plain lines per run of the work besides the first and the time rule: one every 5%. */
export const PLAIN_STEPS = 20;
/** Updates before the ETA's clock starts, unless the caller gives another count. */
export const DEFAULT_WARMUP = 2;

/** Erases the terminal line the cursor is on and returns to its start. */
const CLEAR_LINE = "\r\x1b[2K";

/** Where a progress display writes and what it reads; tests pass fakes. */
export interface ProgressIo {
  /** Writes text to stderr. */
  write(text: string): void;
  /** Whether stderr is a terminal (a redrawn line) or a log or pipe (plain lines). */
  tty: boolean;
  /** Milliseconds since any fixed origin. */
  now(): number;
  /** Columns of the terminal when known (lines are then at most this wide, and at most 80). */
  columns?: number;
}

/** How a `Progress` behaves. */
export interface ProgressOptions {
  /** Write nothing but `warn` lines (the command runs with `--json`). */
  quiet?: boolean;
  /**
   * Updates whose time the ETA leaves out: its clock starts at this update
   * (default 2, so the ETA shows from the third update on).
   */
  warmup?: number;
  /** Where to write (default: the process's stderr). */
  io?: ProgressIo;
}

/** The fields of a line, or a function of the measured rate (work units per second, null until known). */
export type Fields = string[] | ((rate: number | null) => string[]);

const encoder = new TextEncoder();

/** The process's stderr, its kind and the wall clock. */
export function stderrIo(): ProgressIo {
  const tty = Deno.stderr.isTerminal();
  let width: number | undefined;
  if (tty) {
    try {
      width = Deno.consoleSize().columns;
    } catch {
      width = undefined;
    }
  }
  return {
    write(text) {
      let bytes = encoder.encode(text);
      try {
        while (bytes.length > 0) bytes = bytes.subarray(Deno.stderr.writeSync(bytes));
      } catch {
        // A closed stderr must not stop a training run: progress is best effort.
      }
    },
    tty,
    now: () => performance.now(),
    columns: width,
  };
}

/** A point of the work: how much was done at which time. */
interface Mark {
  t: number;
  done: number;
}

/** One progress display; see the module comment. */
export class Progress {
  readonly #io: ProgressIo;
  readonly #quiet: boolean;
  readonly #warmup: number;
  readonly #width: number;
  /** Whether a display is under way (between the first update and `finish`). */
  #active = false;
  /** Updates of the display under way. */
  #updates = 0;
  /** Where the ETA's clock started. */
  #ref: Mark | null = null;
  /** The latest update. */
  #last: Mark | null = null;
  /** Terminal: the text on the line (null: none drawn). */
  #shown: string | null = null;
  /** The latest text not written yet (held back by the cadence). */
  #pending: string | null = null;
  /** When the line was last drawn or printed. */
  #lastWrite = -Infinity;
  /** Log or pipe: the 5% step of the last printed line (-1: none printed). */
  #lastStep = -1;

  /** A display that writes nothing until the first update. */
  constructor(opts: ProgressOptions = {}) {
    this.#io = opts.io ?? stderrIo();
    this.#quiet = opts.quiet ?? false;
    this.#warmup = Math.max(1, opts.warmup ?? DEFAULT_WARMUP);
    const term = this.#io.tty && this.#io.columns ? this.#io.columns : MAX_COLUMNS;
    this.#width = Math.max(20, Math.min(MAX_COLUMNS, term));
  }

  /** Widest line this display writes. */
  get width(): number {
    return this.#width;
  }

  /**
   * Reports `done` units of `total`; the line is `fields` (most important
   * first) and the ETA once known. Reaching `total` finishes the display.
   */
  update(done: number, total: number, fields: Fields): void {
    if (this.#quiet) return;
    const t = this.#io.now();
    if (!this.#active) this.#start();
    this.#updates++;
    if (this.#updates === this.#warmup) this.#ref = { t, done };
    this.#last = { t, done };
    const rate = this.rate();
    const end = done >= total;
    const eta = rate && !end ? `ETA ${fmtEta((total - done) / rate)}` : null;
    const text = this.#fit(typeof fields === "function" ? fields(rate) : fields, eta);
    if (this.#io.tty) {
      if (end || this.#shown === null || t - this.#lastWrite >= REDRAW_MS) this.#draw(text);
      else this.#pending = text;
    } else {
      const step = total > 0 ? Math.floor((PLAIN_STEPS * done) / total) : PLAIN_STEPS;
      const due = this.#lastStep < 0 || end || step > this.#lastStep ||
        t - this.#lastWrite >= PLAIN_EVERY_MS;
      if (due) this.#print(text, step);
      else this.#pending = text;
    }
    if (end) this.finish();
  }

  /**
   * Shows what is being done when the work has no measurable total (a stage
   * of a benchmark): redrawn on a terminal, else a plain line for the first
   * stage and then at most one every 15 s.
   */
  stage(text: string): void {
    if (this.#quiet) return;
    if (!this.#active) this.#start();
    const line = truncate(sanitize(text), this.#width);
    const t = this.#io.now();
    if (this.#io.tty) this.#draw(line);
    else if (this.#lastStep < 0 || t - this.#lastWrite >= PLAIN_EVERY_MS) this.#print(line, 0);
  }

  /** An informational line (wrapped to the width), written above the progress line. */
  log(line: string): void {
    if (!this.#quiet) this.#above(line);
  }

  /** Like `log`, but written even when quiet: why the command ends early (a signal). */
  warn(line: string): void {
    this.#above(line);
  }

  /** Units of work per second since the ETA's clock started (null until two updates span it). */
  rate(): number | null {
    const ref = this.#ref;
    const last = this.#last;
    if (!ref || !last || last.t <= ref.t || last.done <= ref.done) return null;
    return (last.done - ref.done) / ((last.t - ref.t) / 1000);
  }

  /**
   * Ends the display under way: writes the latest update if it was held
   * back, and on a terminal the newline that keeps the line. Safe to call
   * twice; the next update starts a new display.
   */
  finish(): void {
    if (!this.#active) return;
    if (this.#pending !== null) {
      if (this.#io.tty) this.#draw(this.#pending);
      else this.#print(this.#pending, PLAIN_STEPS);
    }
    if (this.#io.tty && this.#shown !== null) this.#io.write("\n");
    this.#active = false;
    this.#shown = null;
    this.#pending = null;
  }

  #start(): void {
    this.#active = true;
    this.#updates = 0;
    this.#ref = null;
    this.#last = null;
    this.#lastStep = -1;
    this.#lastWrite = -Infinity;
  }

  /** `fields` joined, then the ETA, dropping trailing fields and cutting until it fits. */
  #fit(fields: string[], eta: string | null): string {
    const parts = fields.map(sanitize).filter((f) => f !== "");
    const join = (n: number, withEta: boolean) =>
      [...parts.slice(0, n), ...(withEta && eta ? [eta] : [])].join("  ");
    let n = parts.length;
    while (n > 1 && columns(join(n, true)) > this.#width) n--;
    const line = join(n, true);
    return columns(line) <= this.#width ? line : truncate(join(n, false), this.#width);
  }

  #draw(text: string): void {
    this.#io.write(CLEAR_LINE + text);
    this.#shown = text;
    this.#pending = null;
    this.#lastWrite = this.#io.now();
  }

  #print(text: string, step: number): void {
    this.#io.write(text + "\n");
    this.#pending = null;
    this.#lastStep = Math.max(step, 0);
    this.#lastWrite = this.#io.now();
  }

  /** Writes `line` wrapped; on a terminal, clears the progress line first and redraws it below. */
  #above(line: string): void {
    const lines = line.split("\n").flatMap((l) => wrap(sanitize(l), this.#width));
    const text = lines.join("\n") + "\n";
    if (this.#io.tty && this.#shown !== null) {
      this.#io.write(CLEAR_LINE + text);
      this.#draw(this.#pending ?? this.#shown);
    } else this.#io.write(text);
  }
}

/** Runs `job` with a new display, finished however the job ends (before an error line). */
export async function withProgress<R>(
  opts: ProgressOptions,
  job: (progress: Progress) => Promise<R>,
): Promise<R> {
  const progress = new Progress(opts);
  try {
    return await job(progress);
  } finally {
    progress.finish();
  }
}
