import assert from "node:assert/strict";
import { join } from "node:path";
import {
  BROWN_FILE_COUNT,
  brownDir,
  brownFileNames,
  brownToText,
  detokenize,
  loadBrown,
  splitTagged,
} from "../../core/corpus_brown.ts";

const FIRST_SENTENCE = "The Fulton County Grand Jury said Friday an investigation of Atlanta's " +
  'recent primary election produced "no evidence" that any irregularities took place.';

// Every 20th file by sorted name (index % 20 === 19), written out so that a
// change of the rule or of the file order fails here.
const VAL_FILES = [
  "ca20",
  "ca40",
  "cb16",
  "cc09",
  "cd12",
  "ce15",
  "ce35",
  "cf19",
  "cf39",
  "cg11",
  "cg31",
  "cg51",
  "cg71",
  "ch16",
  "cj06",
  "cj26",
  "cj46",
  "cj66",
  "ck06",
  "ck26",
  "cl17",
  "cn07",
  "cn27",
  "cp18",
  "cr09",
]; // deno-fmt-ignore

// The most frequent Brown word tags (nn, in, at, jj, nns, ...), optionally
// with the -tl/-hl/-nc suffixes, at the end of a word: a leftover tag matches.
// (Punctuation tags are left out: the corpus has real words ending in a slash,
// like the phonemes /l/ and /r/, followed by a period.)
const TAG_AT_WORD_END =
  /\/(?:at|nn|nns|np|np\$|jj|in|cc|rb|vb|vbd|vbn|vbg|vbz|cs|pps|ppss|pp\$|to|cd|md|ppo|bez|bedz|ap|dt|ql|be|rp|wdt|hvd|wrb|ber|nr|\*)(?:-(?:tl|hl|nc))*(?=[\s"')]|$)/;

Deno.test("splitTagged() splits at the last slash; tags may hold - $ * + and punctuation", () => {
  const cases: [string, string, string][] = [
    ["Fulton/np-tl", "Fulton", "np-tl"],
    ["Atlanta's/np$", "Atlanta's", "np$"],
    ["wasn't/bedz*", "wasn't", "bedz*"],
    ["I'm/ppss+bem", "I'm", "ppss+bem"],
    ["''/''", "''", "''"],
    ["``/``", "``", "``"],
    [",/,", ",", ","],
    ["--/---hl", "--", "---hl"],
    ["and/or/cc", "and/or", "cc"],
    ["1/4''/nn", "1/4''", "nn"],
    ["//in", "/", "in"],
  ];
  for (const [tok, word, tag] of cases) assert.deepEqual(splitTagged(tok), { word, tag }, tok);
});

Deno.test("detokenize() attaches punctuation and maps `` and '' to double quotes", () => {
  assert.equal(
    detokenize(["He", "said", ",", "``", "no", "''", "(", "twice", ")", ";", "why", "?"]),
    'He said, "no" (twice); why?',
  );
  assert.equal(detokenize(["won", "by", "Ivan", "Allen", "Jr.", "."]), "won by Ivan Allen Jr.");
  assert.equal(
    detokenize(["more", "'", "pro", "'", "letters", "than", "'", "con", "'", "!"]),
    "more 'pro' letters than 'con'!",
  );
  assert.equal(
    detokenize(["voted", "no", "--", "and", "then", ":", "x"]),
    "voted no -- and then: x",
  );
  assert.equal(
    detokenize(["``", "It's", "'", "See", "Joe", ",", "see", "Jim", "'", "''", ",", "he"]),
    `"It's 'See Joe, see Jim'", he`,
  );
});

Deno.test("brownToText(): one paragraph per line, continuation lines joined, headlines alone", () => {
  const raw = "\n\n\tThe/at jury/nn said/vbd ./.\nIt/pps ended/vbd ./.\n\n\n" +
    "Merger/nn-hl proposed/vbn-hl \nHowever/wrb ,/, it/pps is/bez ./.\n\n\n" +
    "\tA/at ``/`` new/jj ''/'' one/cd ?/.\n\n";
  assert.equal(
    brownToText(raw),
    'The jury said. It ended.\nMerger proposed\nHowever, it is.\nA "new" one?\n',
  );
});

Deno.test("loadBrown(): the first line of ca01 is the known plain sentence", () => {
  const b = loadBrown();
  assert.equal(b.files.train[0], "ca01");
  assert.equal(b.train.slice(0, b.train.indexOf("\n")), FIRST_SENTENCE);
});

Deno.test("loadBrown(): no tags, tabs or tokenizer spacing remain", () => {
  const { train, val } = loadBrown();
  for (const [name, text] of [["train", train], ["val", val]]) {
    const m = text.match(TAG_AT_WORD_END);
    assert.equal(m, null, `${name}: tag left: ${m && text.slice(m.index! - 30, m.index! + 30)}`);
    assert.ok(!text.includes("\t"), `${name}: tab left`);
    assert.ok(!text.includes("``") && !/(^|\s)''(\s|$)/m.test(text), `${name}: raw quotes left`);
    // A punctuation token after a space (words like ":35.3" are fine).
    const sp = text.match(/ [.,;:?!)](?=[\s.,;:?!)"]|$)/);
    assert.equal(
      sp,
      null,
      `${name}: space before punctuation: ${sp && text.slice(sp.index! - 20, sp.index! + 20)}`,
    );
    assert.ok(!/\n\n|^\n| {2}/.test(text), `${name}: empty line or double space`);
    // Slashes survive only inside real words (and/or, 1/2): a few hundred in 1M words.
    const slashes = text.split("/").length - 1;
    assert.ok(slashes < 400, `${name}: ${slashes} slashes`);
  }
});

Deno.test("loadBrown(): split by file, every 20th sorted file to validation, ~5% of bytes", () => {
  const b = loadBrown();
  const names = brownFileNames(brownDir());
  assert.equal(names.length, BROWN_FILE_COUNT);
  assert.deepEqual([...b.files.val], VAL_FILES);
  assert.deepEqual([...b.files.train], names.filter((n) => !VAL_FILES.includes(n)));
  assert.equal(b.files.train.length, 475);
  const bytes = (s: string) => new TextEncoder().encode(s).length;
  const frac = bytes(b.val) / (bytes(b.train) + bytes(b.val));
  assert.ok(frac > 0.04 && frac < 0.06, `val share ${frac}`);
  // Each file's text lands whole in its own part, in name order.
  const dir = brownDir();
  const text = (n: string) => brownToText(Deno.readTextFileSync(join(dir, n)));
  assert.equal(b.val, VAL_FILES.map(text).join(""));
  const ca20 = text("ca20");
  assert.ok(b.val.startsWith(ca20) && !b.train.includes(ca20.slice(0, 200)));
  assert.ok(b.train.includes(text("ca19") + text("ca21")));
  const words = (b.train + b.val).split(/\s+/).length;
  assert.ok(words > 950_000 && words < 1_100_000, `${words} words`);
});

Deno.test("loadBrown(): cached, later calls return the same object at once", () => {
  const a = loadBrown();
  const t0 = performance.now();
  const b = loadBrown();
  assert.equal(a, b);
  assert.ok(performance.now() - t0 < 5);
  assert.ok(Object.isFrozen(a) && Object.isFrozen(a.files.train));
});
