/**
 * Pieces shared by the checkpoint modules (core/safetensors.ts, the file
 * format; core/checkpoint.ts, ssd's metadata): one-line error messages that
 * quote names and values safely, and the name order of every sorted list in
 * a checkpoint. Internal: not part of the public API.
 */
import { CheckpointError } from "./errors.ts";

/** Sort order of tensor names and metadata keys (UTF-16 code units, as the files store them). */
export function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A name or value quoted for a one-line message, cut to a readable length. */
export function q(s: string, max = 80): string {
  const cut = s.length > max ? s.slice(0, max) + "…" : s;
  return JSON.stringify(cut);
}

/** `s` on one line (control characters to spaces), cut to `max` characters. */
export function oneLine(s: string, max = 120): string {
  // deno-lint-ignore no-control-regex
  const flat = s.replace(/[\u0000-\u001f\u007f]+/g, " ");
  return flat.length > max ? flat.slice(0, max) + "…" : flat;
}

/** What kind of JSON value `v` is, for "expected …, got …" messages. */
export function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
}

/** `v` as short one-line JSON. */
export function json(v: unknown): string {
  try {
    return oneLine(JSON.stringify(v) ?? String(v), 60);
  } catch {
    return String(v);
  }
}

/** What to do about a corrupt file. */
export const CORRUPT_HINT = "use an earlier checkpoint, or re-save this one";
const TRUNCATED_HINT =
  "the save was interrupted or the copy is incomplete: use an earlier checkpoint or copy it again";

/** The error of a file whose structure is broken. */
export function corrupt(path: string, what: string): CheckpointError {
  return new CheckpointError(`Checkpoint ${path} is corrupt: ${what}: ${CORRUPT_HINT}`);
}

/** The error of a file that ends early. */
export function truncated(path: string, what: string): CheckpointError {
  return new CheckpointError(`Checkpoint ${path} is truncated: ${what}: ${TRUNCATED_HINT}`);
}
