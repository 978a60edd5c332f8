/**
 * Fuzzing the checkpoint loaders through the real commands (not part of `deno task
 * test`: it trains a model and runs hundreds of subprocesses). It trains a tiny model
 * with `ssd train` (4 steps, the checkpoint of step 2 is the base), derives corrupted variants of the checkpoint
 * (tests/stress/_corrupt_variants.ts: truncations, header-length lies, bad JSON, wrong
 * dtypes, offsets out of range, overlaps, NaN / Inf, a FIFO, a folder, huge shapes, bad
 * training state, ...) and runs each through `inspect`, `eval`, `generate`, `moefy` and
 * `train --resume`, each under a timeout. Every run is classified:
 *
 *   refusal         non-zero exit, one `ssd: ` line on stderr, no output file
 *   late refusal    the same, but after progress lines (the run started, then failed)
 *   accepted        exit 0 where the variant is valid for that command
 *   hang            killed at the timeout
 *   crash           a signal, an abort, a stack trace or an "internal error"
 *   silently wrong  exit 0 on a corrupt input, NaN / Inf in the output, an output file
 *                   from a corrupt input, or inspect not naming the mismatch
 *   wrong refusal   a valid input refused
 *
 * Usage: deno run -A tests/stress/corrupt_checkpoints.ts [--jobs 2] [--timeout 120]
 *        [--only REGEX] [--keep] [--verbose]
 * Exits 1 when any run is not a refusal or accepted as intended.
 */
import { join } from "node:path";
import { ssdCommand } from "../cli/_ssd.ts";
import { sampleText } from "../pipelines/_tiny_checkpoint.ts";
import { ENTRIES, type Entry, type Variant, variants } from "./_corrupt_variants.ts";

const VERDICTS = [
  "refusal",
  "late refusal",
  "accepted",
  "hang",
  "crash",
  "silently wrong",
  "wrong refusal",
] as const;
type Verdict = typeof VERDICTS[number];

interface Options {
  jobs: number;
  timeoutS: number;
  only: RegExp | null;
  keep: boolean;
  verbose: boolean;
}

function parseArgs(args: string[]): Options {
  const o: Options = { jobs: 2, timeoutS: 120, only: null, keep: false, verbose: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--jobs") o.jobs = Math.max(1, Math.min(2, Number(args[++i])));
    else if (a === "--timeout") o.timeoutS = Number(args[++i]);
    else if (a === "--only") o.only = new RegExp(args[++i]);
    else if (a === "--keep") o.keep = true;
    else if (a === "--verbose") o.verbose = true;
    else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

interface Ran {
  code: number;
  signal: string | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

/** Runs `ssd ARGS`, killed after `timeoutS`. */
async function ssd(args: string[], timeoutS: number): Promise<Ran> {
  const child = ssdCommand(args).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, timeoutS * 1000);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return {
    code: out.code,
    signal: out.signal,
    timedOut,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

/** The command line of `entry` on checkpoint `path`, writing under `out`. */
function commandOf(entry: Entry, path: string, text: string, out: string): string[] {
  switch (entry) {
    case "inspect":
      return ["inspect", path];
    case "eval":
      return ["eval", path, "--data", text, "--json"];
    case "generate":
      return ["generate", path, "--prompt", "the ", "--tokens", "8", "--temperature", "0"];
    case "moefy":
      return [
        ...["moefy", path, "--experts", "4", "-o", join(out, "moe.safetensors")],
        ...["--data", text, "--tokens", "256", "--eval-tokens", "512", "--iters", "5"],
      ];
    case "resume":
      return ["train", "--resume", path, "--out", out, "--val-tokens", "1024"];
  }
}

async function outputFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.name.endsWith(".safetensors")) names.push(e.name);
    }
  } catch { /* no folder: nothing written */ }
  return names;
}

const STACK = /\bat .*:\d+:\d+|error: Uncaught|panicked at|internal error|RUST_BACKTRACE/;

/** The verdict of one run, and why. */
function classify(v: Variant, entry: Entry, r: Ran, outputs: string[]): [Verdict, string] {
  const want = v.expect[entry];
  const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
  const last = lines.at(-1) ?? "";
  if (r.timedOut) return ["hang", "killed at the timeout"];
  if (r.signal || r.code >= 128) return ["crash", `signal ${r.signal ?? r.code}`];
  if (STACK.test(r.stderr)) return ["crash", lines.find((l) => STACK.test(l)) ?? last];
  if (r.code !== 0) {
    if (!last.startsWith("ssd: ") || lines.filter((l) => l.startsWith("ssd: ")).length !== 1) {
      return ["crash", `no single ssd: line at the end (${lines.length} lines): ${last}`];
    }
    if (outputs.length > 0) return ["silently wrong", `failed but wrote ${outputs}`];
    if (want !== "refuse") return ["wrong refusal", last];
    return lines.length === 1 ? ["refusal", last] : ["late refusal", last];
  }
  if (/\bNaN\b|Infinity/.test(r.stdout)) return ["silently wrong", "NaN / Inf in the output"];
  if (want === "refuse") {
    return [
      "silently wrong",
      `exit 0 on a corrupt input${outputs.length ? `, wrote ${outputs}` : ""}`,
    ];
  }
  if (entry === "inspect" && v.inspectSays && !v.inspectSays.test(r.stdout)) {
    return ["silently wrong", `inspect does not say ${v.inspectSays}`];
  }
  return ["accepted", ""];
}

/** Runs `fn` over `items`, at most `jobs` at a time. */
async function pool<T>(items: T[], jobs: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: jobs }, worker));
}

async function trainBase(work: string, timeoutS: number): Promise<string> {
  const out = join(work, "base_run");
  // 4 steps saved at step 2, so that a resume has steps left to run.
  const r = await ssd(
    [
      ...["train", "--preset", "tiny", "--steps", "4", "--save-every", "2"],
      ...["--out", out, "--val-tokens", "1024"],
    ],
    Math.max(timeoutS, 300),
  );
  const path = join(out, "ckpt-2.safetensors");
  if (r.code !== 0) throw new Error(`ssd train failed (${r.code}): ${r.stderr.slice(-500)}`);
  return path;
}

async function main(): Promise<number> {
  const opts = parseArgs(Deno.args);
  const work = await Deno.makeTempDir({ prefix: "ssd_corrupt_fuzz_" });
  const started = Date.now();
  try {
    console.error(`work folder ${work}; training the base checkpoint...`);
    const base = await trainBase(work, opts.timeoutS);
    const text = join(work, "text.txt");
    await Deno.writeTextFile(text, sampleText(6000));
    const all = variants(base, await Deno.readFile(base)).filter((v) =>
      !opts.only || opts.only.test(v.name)
    );
    await Deno.mkdir(join(work, "v"));
    for (const v of all) await v.make(join(work, "v", `${v.name}.safetensors`));
    const jobs = all.flatMap((v) => ENTRIES.map((entry) => ({ v, entry })));
    console.error(`${all.length} variants x ${ENTRIES.length} entry points = ${jobs.length} runs`);

    const counts = Object.fromEntries(VERDICTS.map((k) => [k, 0])) as Record<Verdict, number>;
    const bad: string[] = [];
    let done = 0;
    await pool(jobs, opts.jobs, async ({ v, entry }) => {
      const out = join(work, "out", `${v.name}.${entry}`);
      await Deno.mkdir(join(work, "out"), { recursive: true });
      if (entry === "moefy") await Deno.mkdir(out);
      const path = join(work, "v", `${v.name}.safetensors`);
      const r = await ssd(commandOf(entry, path, text, out), opts.timeoutS);
      const [verdict, why] = classify(v, entry, r, await outputFiles(out));
      counts[verdict]++;
      const line = `${verdict.padEnd(14)} ${v.name} / ${entry}: ${why}`;
      if (verdict !== "refusal" && verdict !== "accepted") bad.push(line);
      else if (opts.verbose) console.log(line);
      if (++done % 25 === 0) console.error(`${done}/${jobs.length} runs`);
    });

    for (const line of bad.sort()) console.log(line);
    const secs = ((Date.now() - started) / 1000).toFixed(0);
    console.log(`\n${all.length} variants, ${jobs.length} runs in ${secs} s:`);
    for (const k of VERDICTS) console.log(`  ${k.padEnd(15)} ${counts[k]}`);
    return bad.length === 0 ? 0 : 1;
  } finally {
    if (opts.keep) console.error(`kept ${work}`);
    else await Deno.remove(work, { recursive: true });
  }
}

if (import.meta.main) Deno.exit(await main());
