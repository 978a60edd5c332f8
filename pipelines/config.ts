/**
 * Config merging shared by the pipelines: defaults ← `--config file.json` ←
 * flags, as nanoGPT's configurator does. Unknown keys and type changes are
 * rejected with a `ConfigError` naming the key; the resolved config is what
 * gets printed and saved.
 */
import { ConfigError } from "../core/errors.ts";

/** A flat config: every value a number, string, boolean, or null (unset). */
export type FlatConfig = Record<string, number | string | boolean | null>;

/** The flag of a config key, as users type it: `batch_size` → `--batch-size`. */
export function flagOf(key: string): string {
  return `--${key.replaceAll("_", "-")}`;
}

function typeOf(v: unknown): string {
  return v === null ? "null" : typeof v;
}

/**
 * Applies `overrides` onto `base`. `nullable` keys accept null and any type
 * that their declared `types` entry allows (for keys whose default is null).
 */
export function mergeConfig<T extends FlatConfig>(
  base: Readonly<T>,
  overrides: Record<string, unknown>,
  source: string,
  types: Partial<Record<keyof T, string>> = {},
): T {
  const out = { ...base } as Record<string, unknown>;
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) continue;
    if (!(key in base)) {
      throw new ConfigError(`Unknown config key "${key}" in ${source}`);
    }
    const want = (types as Record<string, string>)[key] ?? typeOf(base[key]);
    const got = typeOf(value);
    if (got !== want && !(got === "null" && base[key] === null)) {
      throw new ConfigError(
        `Config key "${key}" in ${source} must be a ${want}, got ${got} (${JSON.stringify(value)})`,
      );
    }
    out[key] = value;
  }
  return out as T;
}

/** Reads a JSON config file: one flat object. */
export async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    throw new ConfigError(`Cannot read config file ${path}: no such file or not readable`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`Config file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    throw new ConfigError(`Config file ${path} must hold one JSON object`);
  }
  return obj as Record<string, unknown>;
}
