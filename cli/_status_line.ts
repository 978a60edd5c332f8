/**
 * One line of progress on stderr, redrawn in place (for a terminal only:
 * the callers create it when stderr is one) and erased when the job ends,
 * so that nothing of it stays between the command and its output.
 */

/** A redrawn stderr line: `draw` replaces it, `done` erases it if it was drawn. */
export interface StatusLine {
  /** Replaces the line's text. */
  draw(text: string): void;
  /** Erases the line (when anything was drawn). */
  done(): void;
  /** Seconds since the line was created. */
  elapsed(): number;
}

/** A new, empty status line. */
export function statusLine(): StatusLine {
  const enc = new TextEncoder();
  const t0 = performance.now();
  let drawn = false;
  const write = (s: string) => Deno.stderr.writeSync(enc.encode(s));
  return {
    draw(text) {
      write(`\r\x1b[2K${text}`);
      drawn = true;
    },
    done() {
      if (drawn) write("\r\x1b[2K");
    },
    elapsed: () => (performance.now() - t0) / 1000,
  };
}

/**
 * Runs `job` with a progress display made by `make` when stderr is a
 * terminal (undefined otherwise), and erases it however the job ends.
 */
export async function withProgress<P extends { done(): void }, R>(
  make: () => P,
  job: (progress: P | undefined) => Promise<R>,
): Promise<R> {
  const progress = Deno.stderr.isTerminal() ? make() : undefined;
  try {
    return await job(progress);
  } finally {
    progress?.done();
  }
}
