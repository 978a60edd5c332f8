/**
 * Runs a commander program and turns every way it can end into an exit code
 * and at most one line on stderr: usage errors exit 2, errors the
 * toolchain raises on purpose (`SsdError`) and file-system errors exit 1, and
 * anything else is a bug, reported in one line with a hint to rerun with
 * `SSD_DEBUG=1`, which adds the stack trace.
 */
import { Command, CommanderError } from "commander";
import { DEBUG_STACKS, SsdError } from "../core/errors.ts";

/** Exit code of a successful run. */
export const EXIT_OK = 0;
/** Exit code of a failed run (bad input, no adapter, a bug). */
export const EXIT_ERROR = 1;
/** Exit code of a command line commander could not parse. */
export const EXIT_USAGE = 2;

/** Prefix of every error line, so scripts can tell our errors from other output. */
const PREFIX = "ssd: ";

/** Deno errors that mean the user pointed us at the wrong path, not that we have a bug. */
const USER_FS_ERRORS = [
  Deno.errors.NotFound,
  Deno.errors.PermissionDenied,
  Deno.errors.AlreadyExists,
  Deno.errors.IsADirectory,
  Deno.errors.NotADirectory,
];

/** Where `runCli` writes; tests replace it to capture the lines. */
export interface CliIo {
  /** Writes text to stdout (help). */
  out(text: string): void;
  /** Writes text to stderr (help after a usage error, error lines). */
  err(text: string): void;
  /** Whether `SSD_DEBUG` asks for stack traces. */
  debug: boolean;
}

const encoder = new TextEncoder();

/** Stdout/stderr of the process, with `SSD_DEBUG` read from the environment. */
export function processIo(): CliIo {
  return {
    out: (text) => writeAll(Deno.stdout, text),
    err: (text) => writeAll(Deno.stderr, text),
    debug: DEBUG_STACKS,
  };
}

function writeAll(stream: { writeSync(p: Uint8Array): number }, text: string): void {
  let bytes = encoder.encode(text);
  while (bytes.length > 0) bytes = bytes.subarray(stream.writeSync(bytes));
}

/** Collapses a possibly multi-line message to one line. */
function oneLine(message: string): string {
  return message.split("\n").map((s) => s.trim()).filter((s) => s !== "").join(" ");
}

/** Full name of a command for "see 'ssd device --help'" hints. */
function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

/**
 * Makes commander throw instead of exiting, and route its output through
 * `io`, on `program` and every subcommand. Its own error text is dropped:
 * `runCli` prints the error line itself. Returns a getter for the command
 * whose parse failed, so the line can point at that command's help.
 */
function takeOver(program: Command, io: CliIo): () => Command | null {
  let failed: Command | null = null;
  const visit = (cmd: Command) => {
    cmd.exitOverride();
    cmd.configureOutput({
      writeOut: io.out,
      writeErr: io.err,
      outputError: () => {
        failed = cmd;
      },
    });
    for (const sub of cmd.commands) visit(sub);
  };
  visit(program);
  return () => failed;
}

/**
 * Parses `args` (without the program name), runs the chosen subcommand and
 * returns the exit code. Never throws.
 */
export async function runCli(
  program: Command,
  args: readonly string[],
  io: CliIo = processIo(),
): Promise<number> {
  const failedCommand = takeOver(program, io);
  try {
    await program.parseAsync([...args], { from: "user" });
    return EXIT_OK;
  } catch (e) {
    if (e instanceof CommanderError) return commanderExit(e, failedCommand() ?? program, io);
    return reportError(e, io);
  }
}

function commanderExit(e: CommanderError, cmd: Command, io: CliIo): number {
  // --help and --version end through an exception too, with exit code 0.
  if (e.exitCode === 0) return EXIT_OK;
  // No subcommand given: commander has already printed the help to stderr.
  if (e.code === "commander.help") return EXIT_USAGE;
  const message = oneLine(e.message)
    .replace(/^error: /, "")
    .replace(/\.$/, "")
    .replace(/\s*\(Did you mean (.+)\?\)$/, ": did you mean $1?");
  io.err(`${PREFIX}${message} (see '${commandPath(cmd)} --help')\n`);
  return EXIT_USAGE;
}

/** Prints the one error line (plus the stack under `SSD_DEBUG`) and returns the exit code. */
export function reportError(e: unknown, io: CliIo): number {
  const err = e instanceof Error ? e : new Error(String(e));
  const expected = err instanceof SsdError || USER_FS_ERRORS.some((c) => err instanceof c);
  const message = oneLine(err.message) || err.name;
  if (expected) {
    io.err(`${PREFIX}${message}\n`);
  } else {
    const hint = io.debug ? "" : " (rerun with SSD_DEBUG=1 to see the stack trace)";
    io.err(`${PREFIX}internal error: ${message}${hint}\n`);
  }
  if (io.debug && err.stack) io.err(`${err.stack}\n`);
  return EXIT_ERROR;
}
