/**
 * Training and evaluation data: loading token streams, random training
 * batches, and the deterministic eval windows.
 *
 * Tokens are bytes (see `tokenizer.ts`), so a dataset is two `Uint8Array`s;
 * batches are widened to `Uint32Array` for upload as index tensors.
 *
 * - `loadText(path)`: `--data PATH`, a text file or a folder of `.txt` files
 *   (the files directly in it, read in code-unit order of their names, each
 *   ending with a newline so files never run together). Validation is the
 *   last 5% of the tokens, or the whole of `--val PATH` when given.
 * - `loadBrownDataset()`: the embedded Brown Corpus, split by file.
 * - `BatchSampler`: B random windows of `ctx + 1` tokens per batch; its state
 *   (RNG state + draw count) goes in checkpoints, so a resumed run draws the
 *   same batches as an uninterrupted one.
 * - `evalWindows`: consecutive windows whose targets tile the text once.
 */
import { join, resolve } from "node:path";
import { BROWN_SOURCE, loadBrown } from "./corpus_brown.ts";
import { ConfigError } from "./errors.ts";
import { Rng, type RngState } from "./rng.ts";
import { encode } from "./tokenizer.ts";

/** Share of the tokens of `--data` kept for validation when `--val` is not given. */
export const VAL_FRACTION = 0.05;

/** Token streams for training and validation. */
export interface Dataset {
  /** Training tokens (bytes). */
  readonly train: Uint8Array;
  /** Validation tokens (bytes). */
  readonly val: Uint8Array;
  /** Where the data came from, for logs and checkpoint metadata. */
  readonly source: string;
}

/** Options of `loadText`. */
export interface LoadTextOptions {
  /** Validation text (file or folder); when given, all of `path` is training data. */
  val?: string;
}

/** Reads a text file or a folder of `.txt` files as bytes; `flag` names the option in errors. */
function readTokens(path: string, flag: string): { tokens: Uint8Array; source: string } {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new ConfigError(
        `${flag}: no such file or folder: ${path} (give a text file or a folder of .txt files)`,
      );
    }
    throw new ConfigError(`${flag}: cannot read ${path}: ${(err as Error).message}`);
  }
  const abs = resolve(path);
  if (info.isFile) {
    const tokens = readFile(path, flag);
    if (tokens.length === 0) throw new ConfigError(`${flag}: file is empty: ${path}`);
    return { tokens, source: abs };
  }
  if (!info.isDirectory) throw new ConfigError(`${flag}: not a file or folder: ${path}`);
  const names: string[] = [];
  for (const e of Deno.readDirSync(path)) {
    if (e.name.endsWith(".txt") && (e.isFile || e.isSymlink)) names.push(e.name);
  }
  if (names.length === 0) {
    throw new ConfigError(`${flag}: folder has no .txt files: ${path}`);
  }
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const parts: Uint8Array[] = [];
  let total = 0;
  for (const name of names) {
    const bytes = readFile(join(path, name), flag);
    if (bytes.length === 0) continue;
    parts.push(bytes);
    total += bytes.length;
    // Files that do not end a line would otherwise glue their last and first words.
    if (bytes[bytes.length - 1] !== 0x0a) {
      parts.push(NEWLINE);
      total += 1;
    }
  }
  if (total === 0) throw new ConfigError(`${flag}: every .txt file in ${path} is empty`);
  const tokens = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    tokens.set(p, off);
    off += p.length;
  }
  return { tokens, source: `${abs}${abs.endsWith("/") ? "" : "/"}*.txt (${names.length} files)` };
}

const NEWLINE = new Uint8Array([0x0a]);

function readFile(path: string, flag: string): Uint8Array {
  try {
    return Deno.readFileSync(path);
  } catch (err) {
    throw new ConfigError(`${flag}: cannot read ${path}: ${(err as Error).message}`);
  }
}

/**
 * All tokens of a text file or a folder of `.txt` files, with no validation
 * split (for `ssd eval --data`, which scores every token). Throws
 * `ConfigError` for a missing path, an empty file or a folder with no text.
 */
export function loadAllText(path: string, flag = "--data"): { tokens: Uint8Array; source: string } {
  return readTokens(path, flag);
}

/**
 * Loads `--data PATH` (a text file, or a folder of `.txt` files) as byte
 * tokens. Validation is the last `VAL_FRACTION` of the tokens (at least one),
 * or all of `opts.val` when given. Throws `ConfigError` for a missing path, an
 * empty file, a folder with no `.txt` files, or data too short to split.
 */
export function loadText(path: string, opts: LoadTextOptions = {}): Dataset {
  const data = readTokens(path, "--data");
  if (opts.val !== undefined) {
    const val = readTokens(opts.val, "--val");
    return Object.freeze({
      train: data.tokens,
      val: val.tokens,
      source: `${data.source} (val: ${val.source})`,
    });
  }
  const n = data.tokens.length;
  const nVal = Math.max(1, Math.ceil(n * VAL_FRACTION));
  if (n - nVal < 1) {
    throw new ConfigError(
      `--data: ${path} has only ${n} tokens, too few to keep ${nVal} for validation ` +
        `(give more text, or a separate --val file)`,
    );
  }
  return Object.freeze({
    train: data.tokens.subarray(0, n - nVal),
    val: data.tokens.subarray(n - nVal),
    source: data.source,
  });
}

let brownCache: Dataset | undefined;

/** The embedded Brown Corpus as byte tokens (train 475 files, val 25 files); cached. */
export function loadBrownDataset(): Dataset {
  if (brownCache) return brownCache;
  const b = loadBrown();
  brownCache = Object.freeze({ train: encode(b.train), val: encode(b.val), source: BROWN_SOURCE });
  return brownCache;
}

/** Options shared by commands that read data (`--data`, `--val`). */
export interface DataOptions {
  /** Text file or folder; the Brown Corpus when absent. */
  data?: string;
  /** Separate validation text (only with `data`). */
  val?: string;
}

/** Loads `--data`/`--val`, or the embedded Brown Corpus when no `--data` is given. */
export function loadDataset(opts: DataOptions = {}): Dataset {
  if (opts.data !== undefined) return loadText(opts.data, { val: opts.val });
  if (opts.val !== undefined) {
    throw new ConfigError("--val needs --data (the embedded corpus has its own validation split)");
  }
  return loadBrownDataset();
}

/**
 * Checks that `tokens` holds at least one window of `ctx + 1` tokens (inputs
 * and shifted targets); `what` names the data in the message.
 */
export function requireWindow(tokens: Uint8Array, ctx: number, what: string): void {
  if (tokens.length < ctx + 1) {
    throw new ConfigError(
      `${what} has ${tokens.length} tokens, fewer than one batch window of ctx + 1 = ${ctx + 1}: ` +
        `give more text or a smaller --ctx`,
    );
  }
}

/** One training batch: `x[b * ctx + t]` is an input token, `y[b * ctx + t]` the next one. */
export interface Batch {
  /** Inputs, row-major (B, T). */
  x: Uint32Array;
  /** Targets: the inputs shifted left by one, (B, T). */
  y: Uint32Array;
}

/** Serializable `BatchSampler` state (JSON-safe; saved in `ssd.train` metadata). */
export interface SamplerState {
  /** RNG state after the last drawn batch. */
  rng: RngState;
  /** Batches drawn so far. */
  draws: number;
  /** Length of the token stream the sampler draws from (a guard against different data). */
  tokens: number;
  /** Batch size. */
  batch: number;
  /** Context length. */
  ctx: number;
}

/** Options of `BatchSampler`. */
export interface SamplerOptions {
  /** Batch size B (windows per batch). */
  batch: number;
  /** Context length T (tokens per input row). */
  ctx: number;
  /** RNG seed for window positions. */
  seed: number;
}

function checkPositiveInt(v: number, name: string): void {
  if (!(Number.isSafeInteger(v) && v >= 1)) {
    throw new ConfigError(`BatchSampler: ${name} must be a positive integer, got ${v}`);
  }
}

/**
 * Draws batches of B windows of `ctx + 1` consecutive tokens at uniformly
 * random start positions (with replacement), from its own seeded `Rng` so
 * that nothing else in the program shifts the data order.
 */
export class BatchSampler {
  /** The token stream windows are drawn from. */
  readonly tokens: Uint8Array;
  /** Windows per batch (B). */
  readonly batch: number;
  /** Input tokens per window (each window holds ctx + 1). */
  readonly ctx: number;
  #rng: Rng;
  #draws = 0;

  /** Throws `ConfigError` when `tokens` is shorter than one window of `ctx + 1`. */
  constructor(tokens: Uint8Array, opts: SamplerOptions) {
    checkPositiveInt(opts.batch, "batch");
    checkPositiveInt(opts.ctx, "ctx");
    requireWindow(tokens, opts.ctx, "Training data");
    this.tokens = tokens;
    this.batch = opts.batch;
    this.ctx = opts.ctx;
    this.#rng = new Rng(opts.seed);
  }

  /**
   * Recreates a sampler at a saved state; the next batch is the one the saved
   * sampler would have drawn next. Throws `ConfigError` when the data, batch
   * size or context length differ from the saved ones (the order would not
   * be reproduced).
   */
  static fromState(
    tokens: Uint8Array,
    opts: { batch: number; ctx: number },
    state: SamplerState,
  ): BatchSampler {
    const want: [string, number, number][] = [
      ["data length (tokens)", tokens.length, state.tokens],
      ["batch size", opts.batch, state.batch],
      ["ctx", opts.ctx, state.ctx],
    ];
    for (const [name, got, saved] of want) {
      if (got !== saved) {
        throw new ConfigError(
          `Cannot resume the data order: ${name} is ${got} but the checkpoint was saved with ` +
            `${saved}; resume with the same --data and config`,
        );
      }
    }
    if (
      !Array.isArray(state.rng) || state.rng.length !== 4 ||
      !state.rng.every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32) ||
      state.rng.every((w) => w === 0) || !(Number.isSafeInteger(state.draws) && state.draws >= 0)
    ) {
      throw new ConfigError(
        `Cannot resume the data order: bad sampler state ${JSON.stringify(state)}`,
      );
    }
    const s = new BatchSampler(tokens, { ...opts, seed: 0 });
    s.#rng = new Rng(state.rng);
    s.#draws = state.draws;
    return s;
  }

  /** Batches drawn so far. */
  get draws(): number {
    return this.#draws;
  }

  /** The state to save; `fromState` continues exactly from here. */
  state(): SamplerState {
    return {
      rng: this.#rng.state(),
      draws: this.#draws,
      tokens: this.tokens.length,
      batch: this.batch,
      ctx: this.ctx,
    };
  }

  /** Draws the next batch; fills `out` when given (its arrays must hold B * ctx). */
  next(out?: Batch): Batch {
    const { batch: B, ctx: T, tokens } = this;
    const x = out?.x ?? new Uint32Array(B * T);
    const y = out?.y ?? new Uint32Array(B * T);
    if (x.length !== B * T || y.length !== B * T) {
      throw new ConfigError(`BatchSampler.next: out arrays must hold ${B * T} tokens`);
    }
    const starts = tokens.length - T; // valid window starts: 0 .. n - T - 1
    for (let b = 0; b < B; b++) {
      const s = this.#rng.int(starts);
      const row = b * T;
      for (let t = 0; t < T; t++) {
        x[row + t] = tokens[s + t];
        y[row + t] = tokens[s + t + 1];
      }
    }
    this.#draws++;
    return { x, y };
  }
}

/**
 * One eval window: the model reads `tokens[start, start + scored)` and is
 * scored on predicting `tokens[start + 1, start + scored + 1)`. The window
 * spans `scored + 1` tokens; its first is context only.
 */
export interface EvalWindow {
  /** Index of the window's first (context-only) token. */
  start: number;
  /** Input length = number of scored targets, 1 .. ctx (less than ctx only for the last). */
  scored: number;
}

/**
 * The deterministic eval protocol: consecutive windows of `ctx`
 * input tokens starting at 0, ctx, 2 ctx, ...; the last may be shorter.
 * Their targets tile tokens 1 .. n-1: every token except the very first is
 * scored exactly once, and the first token of each window is only context
 * (the previous window already scored it). Needs at least 2 tokens.
 */
export function evalWindows(tokens: { length: number }, ctx: number): EvalWindow[] {
  if (!(Number.isSafeInteger(ctx) && ctx >= 1)) {
    throw new ConfigError(`evalWindows: ctx must be a positive integer, got ${ctx}`);
  }
  const n = tokens.length;
  if (n < 2) {
    throw new ConfigError(
      `Eval data has ${n} token${n === 1 ? "" : "s"}: need at least 2 (one context, one scored)`,
    );
  }
  const out: EvalWindow[] = [];
  for (let start = 0; start < n - 1; start += ctx) {
    out.push({ start, scored: Math.min(ctx, n - 1 - start) });
  }
  return out;
}

/**
 * Eval windows grouped for batched forwards: the full windows `batch` at a
 * time, and a shorter window (only the last can be) in a group of its own,
 * so every group runs at one length with no padding.
 */
export function windowGroups(
  windows: readonly EvalWindow[],
  ctx: number,
  batch: number,
): EvalWindow[][] {
  const full = windows.filter((w) => w.scored === ctx);
  const groups: EvalWindow[][] = [];
  for (let i = 0; i < full.length; i += batch) groups.push(full.slice(i, i + batch));
  const short = windows.filter((w) => w.scored < ctx);
  if (short.length > 0) groups.push(short);
  return groups;
}

/** A batch of eval windows padded to (B, ctx), with a mask of the scored positions. */
export interface EvalBatch extends Batch {
  /** 1 where `y` is a real target, 0 in the padding of a short window, (B, T). */
  mask: Uint8Array;
  /** Number of scored targets (sum of `mask`). */
  scored: number;
}

/**
 * Packs eval windows into one padded batch of B = `windows.length` rows of
 * `ctx` (padding tokens are 0 and masked out), ready to upload.
 */
export function packEvalBatch(
  tokens: Uint8Array,
  windows: readonly EvalWindow[],
  ctx: number,
): EvalBatch {
  const B = windows.length;
  const x = new Uint32Array(B * ctx);
  const y = new Uint32Array(B * ctx);
  const mask = new Uint8Array(B * ctx);
  let scored = 0;
  windows.forEach((w, b) => {
    if (w.scored > ctx || w.start + w.scored >= tokens.length) {
      throw new ConfigError(
        `packEvalBatch: window {start: ${w.start}, scored: ${w.scored}} does not fit ctx ${ctx} ` +
          `and ${tokens.length} tokens`,
      );
    }
    const row = b * ctx;
    for (let t = 0; t < w.scored; t++) {
      x[row + t] = tokens[w.start + t];
      y[row + t] = tokens[w.start + t + 1];
      mask[row + t] = 1;
    }
    scored += w.scored;
  });
  return { x, y, mask, scored };
}

/**
 * Entropy in bits of the byte (unigram) distribution of `tokens`: the bits
 * per byte of the best model that ignores context, a ceiling a trained model's
 * bpb should beat.
 */
export function unigramEntropyBits(tokens: ArrayLike<number>): number {
  const n = tokens.length;
  if (n === 0) return 0;
  const counts = new Float64Array(256);
  for (let i = 0; i < n; i++) {
    const t = tokens[i];
    if (!(Number.isInteger(t) && t >= 0 && t < 256)) {
      throw new ConfigError(`unigramEntropyBits: token ${t} at index ${i} is not a byte`);
    }
    counts[t]++;
  }
  let h = 0;
  for (const c of counts) if (c > 0) h -= (c / n) * Math.log2(c / n);
  return h;
}
