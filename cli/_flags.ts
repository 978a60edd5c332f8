/**
 * Flag value parsers shared by subcommands. Each throws commander's
 * `InvalidArgumentError`, which `cli/_run.ts` turns into one usage line
 * and exit code 2.
 */
import { InvalidArgumentError } from "commander";

/** Parses an integer flag value (any sign: ranges are checked with the config). */
export function intArg(value: string): number {
  const n = Number(value);
  if (!/^[+-]?\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) {
    throw new InvalidArgumentError(`expected an integer, got "${value}"`);
  }
  return n;
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
