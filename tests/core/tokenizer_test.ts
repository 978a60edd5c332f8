import assert from "node:assert/strict";
import { CheckpointError, SsdError } from "../../core/errors.ts";
import { Rng } from "../../core/rng.ts";
import {
  BYTE_TOKENIZER,
  ByteDecoder,
  decode,
  encode,
  encodeIds,
  TOKENIZER_ID,
  tokenizerFromId,
  VOCAB_SIZE,
} from "../../core/tokenizer.ts";

const SAMPLES = [
  "",
  "hello, world",
  "héllo wörld",
  "price: 5 € — ok",
  "日本語のテキスト",
  "clef 𝄞 and emoji 🙂👍🏽",
  "tabs\tand\nnewlines\r\n",
];

Deno.test("tokenizer constants: byte vocab of 256 with a stable id", () => {
  assert.equal(TOKENIZER_ID, "bytes-v1");
  assert.equal(VOCAB_SIZE, 256);
  assert.equal(BYTE_TOKENIZER.id, TOKENIZER_ID);
  assert.equal(BYTE_TOKENIZER.vocabSize, 256);
});

Deno.test("encode() gives the UTF-8 bytes, one token per byte", () => {
  assert.deepEqual([...encode("Ab")], [0x41, 0x62]);
  // é = C3 A9, € = E2 82 AC, 𝄞 (U+1D11E) = F0 9D 84 9E
  assert.deepEqual([...encode("é€𝄞")], [0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9d, 0x84, 0x9e]);
  const ids = encodeIds("é€𝄞");
  assert.ok(ids instanceof Uint32Array);
  assert.deepEqual([...ids], [...encode("é€𝄞")]);
});

Deno.test("decode(encode(s)) round-trips text, from bytes and from u32 ids", () => {
  for (const s of SAMPLES) {
    assert.equal(decode(encode(s)), s);
    assert.equal(decode(encodeIds(s)), s);
    assert.equal(decode(Array.from(encode(s))), s);
  }
});

Deno.test("decode() turns invalid UTF-8 into U+FFFD instead of failing", () => {
  assert.equal(decode([0x61, 0xff, 0x62]), "a\uFFFDb");
  assert.equal(decode([0xe2, 0x82]), "\uFFFD"); // truncated 3-byte char
});

Deno.test("decode() rejects ids outside [0, 256) naming the index", () => {
  for (const bad of [256, -1, 1.5, NaN]) {
    assert.throws(() => decode([65, bad]), (e: Error) => {
      assert.ok(e instanceof SsdError);
      assert.match(
        e.message,
        /^decode: token .* at index 1 is outside the byte vocabulary \[0, 256\)$/,
      );
      return true;
    });
  }
  assert.throws(() => decode(new Uint32Array([300])), SsdError);
});

Deno.test("ByteDecoder: every split point of a multi-byte text gives back the text", () => {
  const text = "aé€𝄞🙂z";
  const bytes = encode(text);
  for (let cut = 0; cut <= bytes.length; cut++) {
    const d = new ByteDecoder();
    const a = d.push(bytes.subarray(0, cut));
    const b = d.push(bytes.subarray(cut));
    assert.ok(!a.includes("\uFFFD"), `cut ${cut}: partial char leaked as U+FFFD`);
    assert.equal(a + b + d.flush(), text, `cut ${cut}`);
    // Only whole characters come out of the first chunk.
    assert.ok(text.startsWith(a), `cut ${cut}: ${JSON.stringify(a)}`);
  }
});

Deno.test("ByteDecoder: token-by-token and random chunks equal decode()", () => {
  const rng = new Rng(7);
  for (const s of SAMPLES) {
    const ids = encodeIds(s);
    const d1 = new ByteDecoder();
    let one = "";
    for (const t of ids) one += d1.push(t);
    assert.equal(one + d1.flush(), s);
    const d2 = new ByteDecoder();
    let chunked = "";
    for (let i = 0; i < ids.length;) {
      const n = 1 + rng.int(4);
      chunked += d2.push(ids.subarray(i, i + n));
      i += n;
    }
    assert.equal(chunked + d2.flush(), s);
  }
});

Deno.test("ByteDecoder: flush() emits a dangling partial char as U+FFFD and resets", () => {
  const d = new ByteDecoder();
  assert.equal(d.push([0x61, 0xe2, 0x82]), "a");
  assert.equal(d.flush(), "\uFFFD");
  assert.equal(d.push(encode("€")), "€");
  assert.equal(d.flush(), "");
  assert.throws(() => d.push(999), /ByteDecoder\.push: token 999 at index 0/);
});

Deno.test("tokenizerFromId() knows bytes-v1 and rejects other ids with CheckpointError", () => {
  assert.equal(tokenizerFromId("bytes-v1"), BYTE_TOKENIZER);
  assert.throws(() => tokenizerFromId("gpt2"), (e: Error) => {
    assert.ok(e instanceof CheckpointError);
    assert.match(e.message, /Unknown tokenizer "gpt2".*"bytes-v1"/);
    return true;
  });
});
