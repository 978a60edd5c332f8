/**
 * Typed field checks for the JSON files that one subcommand writes and
 * another reads (metrics lines, bench documents): each error is one
 * `ConfigError` line naming the file (and line) the value came from.
 */
import { ConfigError } from "../core/errors.ts";

/** A parsed JSON object. */
export type Json = Record<string, unknown>;

/** Describes a JSON value for messages: `"abc"`, `null`, `an array`. */
export function show(v: unknown): string {
  if (Array.isArray(v)) return "an array";
  if (v !== null && typeof v === "object") return "an object";
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? s.slice(0, 37) + "..." : s;
}

/** Field checks that throw `ConfigError` prefixed with where the value came from. */
export class Fields {
  constructor(readonly where: string) {}

  fail(message: string): never {
    throw new ConfigError(`${this.where}: ${message}`);
  }

  num(o: Json, key: string, opts: { required?: boolean; nullable?: boolean } = {}): number | null {
    return this.value(o[key], key, opts);
  }

  value(v: unknown, key: string, opts: { required?: boolean; nullable?: boolean }): number | null {
    if (v === undefined && !opts.required) return null;
    if (v === null && opts.nullable) return null;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      this.fail(
        v === undefined ? `"${key}" is missing` : `"${key}" is ${show(v)}, expected a number`,
      );
    }
    return v;
  }

  int(o: Json, key: string, opts: { required?: boolean; nullable?: boolean } = {}): number | null {
    const v = this.num(o, key, opts);
    if (v !== null && !Number.isSafeInteger(v)) {
      this.fail(`"${key}" is ${v}, expected an integer`);
    }
    return v;
  }

  oneOf<T extends string>(o: Json, key: string, choices: readonly T[]): T {
    const v = o[key];
    if (typeof v !== "string" || !(choices as readonly string[]).includes(v)) {
      const want = choices.map((c) => `"${c}"`).join(" or ");
      this.fail(
        v === undefined ? `"${key}" is missing` : `"${key}" is ${show(v)}, expected ${want}`,
      );
    }
    return v as T;
  }

  object(v: unknown, what: string): Json {
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      this.fail(`${what} is ${show(v)}, expected a JSON object`);
    }
    return v as Json;
  }
}
