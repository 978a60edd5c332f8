/**
 * Byte-level tokenizer: a token is one byte of the UTF-8 text, so the
 * vocabulary is exactly 256 ids, there are no special tokens, and every byte
 * string (valid UTF-8 or not) round-trips through `encode`/`decode` losslessly
 * at the token level. Nothing to download, nothing to train.
 *
 * Decoding bytes to text is lossy only where the bytes are not valid UTF-8
 * (they become U+FFFD), which a sampling model can produce; `ByteDecoder`
 * decodes a stream of tokens chunk by chunk without breaking characters whose
 * bytes arrive in different chunks (for `generate` streaming).
 */
import { CheckpointError, SsdError } from "./errors.ts";

/** Identifier of this tokenizer, saved in checkpoints (`ssd.train` metadata). */
export const TOKENIZER_ID = "bytes-v1";

/** Number of token ids: one per byte value. */
export const VOCAB_SIZE = 256;

const ENCODER = new TextEncoder();

/** Encodes `text` as its UTF-8 bytes; each byte is one token id in [0, 256). */
export function encode(text: string): Uint8Array {
  return ENCODER.encode(text);
}

/** Encodes `text` as token ids widened to u32 (the dtype of GPU index tensors). */
export function encodeIds(text: string): Uint32Array {
  return Uint32Array.from(encode(text));
}

/**
 * Narrows token ids to bytes, rejecting ids outside the vocabulary (a model
 * with a larger vocab, or garbage) instead of silently wrapping them mod 256.
 */
export function toBytes(tokens: ArrayLike<number>, op = "decode"): Uint8Array {
  if (tokens instanceof Uint8Array) return tokens;
  const out = new Uint8Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!(Number.isInteger(t) && t >= 0 && t < VOCAB_SIZE)) {
      throw new SsdError(
        `${op}: token ${t} at index ${i} is outside the byte vocabulary [0, ${VOCAB_SIZE})`,
      );
    }
    out[i] = t;
  }
  return out;
}

/** Decodes a complete token sequence to text (invalid UTF-8 becomes U+FFFD). */
export function decode(tokens: ArrayLike<number>): string {
  return new TextDecoder("utf-8").decode(toBytes(tokens));
}

/**
 * Streaming decoder: `push` returns the text completed so far and holds back
 * the bytes of a character that is not finished yet, so that concatenating
 * every `push` result and the final `flush()` equals `decode(all tokens)`.
 */
export class ByteDecoder {
  #dec = new TextDecoder("utf-8");

  /** Decodes one more chunk of tokens; returns only whole characters. */
  push(tokens: ArrayLike<number> | number): string {
    const bytes = toBytes(typeof tokens === "number" ? [tokens] : tokens, "ByteDecoder.push");
    return this.#dec.decode(bytes, { stream: true });
  }

  /** Ends the stream: a dangling partial character comes out as U+FFFD; the decoder is reset. */
  flush(): string {
    return this.#dec.decode();
  }
}

/** What a checkpoint needs to know about the tokenizer it was trained with. */
export interface Tokenizer {
  /** Saved in checkpoints; must match when a checkpoint is loaded. */
  readonly id: string;
  /** Number of token ids (the model's `vocab`). */
  readonly vocabSize: number;
  /** Text to token ids. */
  encode(text: string): Uint8Array;
  /** Token ids to text. */
  decode(tokens: ArrayLike<number>): string;
}

/** The default (and for now only) tokenizer. */
export const BYTE_TOKENIZER: Tokenizer = Object.freeze({
  id: TOKENIZER_ID,
  vocabSize: VOCAB_SIZE,
  encode,
  decode,
});

/** Looks up a tokenizer by the id stored in a checkpoint; an unknown id is a `CheckpointError`. */
export function tokenizerFromId(id: string): Tokenizer {
  if (id === TOKENIZER_ID) return BYTE_TOKENIZER;
  throw new CheckpointError(
    `Unknown tokenizer "${id}" in checkpoint: this version of ssd knows only "${TOKENIZER_ID}"`,
  );
}
