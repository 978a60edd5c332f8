/**
 * Running the real `ssd` CLI as a subprocess (`deno run -A cli/main.ts ...`)
 * for the command tests, and the check of a failed run (one `ssd: ` line on
 * stderr, a non-zero exit, no stack trace).
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

/** The repository root (the subprocess's working folder). */
export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** What a run printed and how it ended. */
export interface Run {
  /** Exit code. */
  code: number;
  /** Stdout, decoded as UTF-8. */
  stdout: string;
  /** Stdout as raw bytes. */
  stdoutBytes: Uint8Array;
  /** Stderr, decoded as UTF-8. */
  stderr: string;
}

/** Keeps this process on the heuristic kernels too (call before the GPU is used). */
export function noAutotune(): void {
  Deno.env.set("SSD_NO_AUTOTUNE", "1");
}

/** The command `ssd ARGS` (autotune off, see `noAutotune`), stdout and stderr piped. */
export function ssdCommand(args: string[], env: Record<string, string> = {}): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli/main.ts", ...args],
    cwd: ROOT,
    env: {
      NO_COLOR: "1",
      XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp",
      // The heuristic kernels in every process: no trial, and the same f32 sums as in the test.
      SSD_NO_AUTOTUNE: "1",
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
  });
}

/** Runs `ssd ARGS` and waits for it (autotune off, see `noAutotune`). */
export async function ssd(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const out = await ssdCommand(args, env).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stdoutBytes: out.stdout,
    stderr: dec.decode(out.stderr),
  };
}

/** Asserts a user-error failure: exit `code`, one `ssd: ` line on stderr, no stack trace. */
export function assertOneErrorLine(r: Run, code: number): string {
  assert.equal(r.code, code, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.split("\n").filter((l) => l !== "");
  assert.equal(lines.length, 1, `expected one stderr line, got:\n${r.stderr}`);
  assert.match(lines[0], /^ssd: /);
  assert.doesNotMatch(r.stderr, /\bat .*:\d+:\d+|Error:|file:\/\//, "stack trace on stderr");
  assert.doesNotMatch(lines[0], /internal error/, "a user error reported as a bug");
  return lines[0];
}

/**
 * Runs `ssd ARGS | head -c BYTES`: reads `bytes` bytes of stdout, closes the
 * pipe, and waits for the process. `stdout` holds the bytes read.
 */
export async function ssdHead(args: string[], bytes: number): Promise<Run> {
  const child = ssdCommand(args).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.getReader();
  const got: number[] = [];
  while (got.length < bytes) {
    const { value, done } = await reader.read();
    if (done) break;
    got.push(...value);
  }
  await reader.cancel();
  const status = await child.status;
  const head = Uint8Array.from(got.slice(0, bytes));
  return {
    code: status.code,
    stdout: new TextDecoder().decode(head),
    stdoutBytes: head,
    stderr: await stderr,
  };
}
