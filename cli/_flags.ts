/**
 * Flag value parsers and options shared by subcommands. Each parser throws
 * commander's `InvalidArgumentError`, which `cli/_run.ts` turns into one
 * usage line and exit code 2.
 */
import { type Command, InvalidArgumentError } from "commander";

/** Parses an integer flag value (any sign: ranges are checked with the config). */
export function intArg(value: string): number {
  const n = Number(value);
  if (!/^[+-]?\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) {
    throw new InvalidArgumentError(`expected an integer, got "${value}"`);
  }
  return n;
}

/** An integer flag parser that refuses values below `min`, saying `expected ${what}`. */
export function intAtLeast(min: number, what: string): (value: string) => number {
  return (value: string): number => {
    const n = intArg(value);
    if (n < min) throw new InvalidArgumentError(`expected ${what}, got "${value}"`);
    return n;
  };
}

/** Parses a positive integer flag value. */
export const positiveInt: (value: string) => number = intAtLeast(1, "a positive integer");
/** Parses a non-negative integer flag value. */
export const nonNegativeInt: (value: string) => number = intAtLeast(0, "a non-negative integer");

/**
 * Adds `--top-k <k>` and `--dense` (experts per token of an MoE checkpoint,
 * or all of them), as `ssd eval` and `ssd generate` take them.
 */
export function expertFlags(cmd: Command, denseHelp: string): Command {
  return cmd
    .option(
      "--top-k <k>",
      "experts per token for an MoE checkpoint (default: its top_k)",
      positiveInt,
    )
    .option("--dense", denseHelp);
}

/** Parses a finite number flag value. */
export function numArg(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) {
    throw new InvalidArgumentError(`expected a number, got "${value}"`);
  }
  return n;
}

/** `dModel` → `d_model`: commander camelCases flags; configs are snake_case. */
export function snakeKeys(opts: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(opts)) {
    out[k.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase())] = v;
  }
  return out;
}

/** Parses "1,2,4" into positive integers (a usage error otherwise). */
export function intListArg(value: string): number[] {
  const parts = value.split(",").map((s) => s.trim());
  if (parts.some((s) => s === "")) {
    throw new InvalidArgumentError(
      `expected a comma-separated list of positive integers, got "${value}"`,
    );
  }
  return parts.map((s) => {
    if (!/^\+?\d+$/.test(s) || Number(s) < 1 || !Number.isSafeInteger(Number(s))) {
      throw new InvalidArgumentError(
        `expected a comma-separated list of positive integers, got "${value}"`,
      );
    }
    return Number(s);
  });
}
