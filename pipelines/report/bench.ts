/**
 * The bench documents of `ssd report`: read with the bench command's own
 * reader (`pipelines/bench/json.ts`) and labelled for the legends.
 */
import { basename, resolve } from "node:path";
import { type BenchJsonRead, readBenchJson } from "../bench/json.ts";
import { uniqueNames } from "./_util.ts";

/** One bench file, read and checked. */
export interface BenchData extends BenchJsonRead {
  /** The file as given. */
  file: string;
  /** Legend label, unique among the report's bench files. */
  label: string;
}

/**
 * Reads an `ssd bench --json` document.
 *
 * @param file the JSON file
 * @throws ConfigError naming the file and the bad field
 */
export async function readBench(file: string): Promise<BenchData> {
  const doc = await readBenchJson(file);
  return { file, label: basename(file), ...doc };
}

/** Labels bench files by their shortest distinct path, without `.json`. */
export function labelBenches(benches: BenchData[]): void {
  const names = uniqueNames(benches.map((b) => resolve(b.file)), ".json");
  benches.forEach((b, i) => (b.label = names[i].replace(/\.json$/, "")));
}
