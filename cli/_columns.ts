/**
 * Terminal columns of text: how wide a string prints, cutting a line to a
 * width and wrapping a long one, and short durations. The progress display
 * (cli/_progress.ts) keeps every line it writes within 80 columns with these,
 * whatever the content (paths, JSON, wide characters, stray control bytes).
 */

/** The widest line the progress display writes. */
export const MAX_COLUMNS = 80;

/** Code point ranges that print two columns wide (CJK, Hangul, fullwidth forms, emoji). */
const WIDE: [number, number][] = [
  [0x1100, 0x115f],
  [0x2e80, 0x303e],
  [0x3041, 0x33ff],
  [0x3400, 0x4dbf],
  [0x4e00, 0x9fff],
  [0xa000, 0xa4cf],
  [0xac00, 0xd7a3],
  [0xf900, 0xfaff],
  [0xfe30, 0xfe4f],
  [0xff00, 0xff60],
  [0xffe0, 0xffe6],
  [0x1f300, 0x1f64f],
  [0x1f900, 0x1f9ff],
  [0x20000, 0x3fffd],
];

/** Columns one code point takes: 0 for combining marks and zero-width joiners, 2 for wide ones. */
function charWidth(cp: number): number {
  if ((cp >= 0x300 && cp <= 0x36f) || (cp >= 0x200b && cp <= 0x200f) || cp === 0xfe0f) return 0;
  return WIDE.some(([a, b]) => cp >= a && cp <= b) ? 2 : 1;
}

/**
 * `text` with every control character (escape codes, `\r`, tabs, newlines)
 * replaced, so that content can never move the cursor or colour the
 * terminal: a tab or newline becomes a space, anything else `?`.
 */
export function sanitize(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\t\n]/g, " ").replace(/[\x00-\x1f\x7f-\x9f]/g, "?");
}

/** Columns `text` takes on a terminal (after `sanitize`). */
export function columns(text: string): number {
  let w = 0;
  for (const ch of text) w += charWidth(ch.codePointAt(0)!);
  return w;
}

/** The longest prefix of `text` that fits in `width` columns. */
function prefixFitting(text: string, width: number): string {
  let w = 0;
  let out = "";
  for (const ch of text) {
    w += charWidth(ch.codePointAt(0)!);
    if (w > width) break;
    out += ch;
  }
  return out;
}

/** `text` cut to `width` columns, ending in "..." when anything was cut. */
export function truncate(text: string, width: number = MAX_COLUMNS): string {
  if (columns(text) <= width) return text;
  if (width <= 3) return prefixFitting(text, width);
  return prefixFitting(text, width - 3) + "...";
}

/**
 * `text` broken into lines of at most `width` columns: at the last space or
 * comma that fits (so that a JSON config breaks between keys), else
 * anywhere; continuation lines start with two spaces.
 */
export function wrap(text: string, width: number = MAX_COLUMNS): string[] {
  const lines: string[] = [];
  let rest = text;
  let indent = "";
  while (columns(indent + rest) > width) {
    const room = prefixFitting(rest, width - indent.length);
    const cut = Math.max(room.lastIndexOf(" "), room.lastIndexOf(",") + 1);
    // A break in the first quarter would leave a stub of a line: cut anywhere instead.
    // (At least one character per line, however narrow the width.)
    const at = cut > room.length / 4
      ? cut
      : Math.max(room.length, rest.codePointAt(0)! > 0xffff ? 2 : 1);
    lines.push(indent + rest.slice(0, at).trimEnd());
    rest = rest.slice(at).trimStart();
    indent = "  ";
  }
  if (rest !== "" || lines.length === 0) lines.push(indent + rest);
  return lines;
}

/** Seconds as "4m05s", "1h02m" from an hour on, "45s" under a minute. */
export function fmtEta(s: number): string {
  if (!Number.isFinite(s) || s < 0) return "?";
  const t = Math.round(s);
  const pad = (n: number) => String(n).padStart(2, "0");
  if (t >= 3600) return `${Math.floor(t / 3600)}h${pad(Math.floor((t % 3600) / 60))}m`;
  if (t >= 60) return `${Math.floor(t / 60)}m${pad(t % 60)}s`;
  return `${t}s`;
}

/** Seconds as "4m05s", or "12.3s" under a minute (a run's wall time). */
export function fmtDuration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 59.95) return `${s.toFixed(1)}s`;
  const t = Math.round(s);
  return `${Math.floor(t / 60)}m${String(t % 60).padStart(2, "0")}s`;
}
