/**
 * Tests of the safetensors format in core/checkpoint.ts: byte-exact output against an
 * independent hand-built encoding, save → load → save identity, round trips of every
 * dtype (incl. empty tensors, scalars, NaN bit patterns), interop with files laid out as
 * other safetensors writers do, and rejection of each kind of corrupt or truncated file
 * (with the message substring).
 *
 * Pure host code: no GPU needed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  decodeCheckpoint,
  encodeCheckpoint,
  type HostTensor,
  MAX_HEADER_BYTES,
  readCheckpoint,
  readHeader,
  writeCheckpoint,
} from "../../core/checkpoint.ts";
import { CheckpointError } from "../../core/errors.ts";
import {
  assertCkptError,
  bytesOf,
  decodeRejects,
  f32,
  handBuild,
  leF32,
  leU32,
  type RawEntry,
  readRejects,
  sampleContents,
  withDir,
} from "./_checkpoint_fixtures.ts";

Deno.test("encodeCheckpoint() gives exactly the hand-built safetensors bytes", () => {
  const enc = encodeCheckpoint({
    tensors: {
      "b": { dtype: "U32", shape: [2], data: Uint32Array.from([7, 0x01020304]) },
      "a": { dtype: "F32", shape: [1, 2], data: f32(1.5, -2) },
    },
  });
  // Sorted names, metadata first, fixed key order, no whitespace, space padding to 8.
  const json = '{"__metadata__":{"ssd.format":"1"},' +
    '"a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},' +
    '"b":{"dtype":"U32","shape":[2],"data_offsets":[8,16]}}';
  const padded = json + " ".repeat((8 - (json.length % 8)) % 8);
  const expected = new Uint8Array(8 + padded.length + 16);
  new DataView(expected.buffer).setUint32(0, padded.length, true);
  expected.set(new TextEncoder().encode(padded), 8);
  expected.set(leF32(1.5, -2), 8 + padded.length);
  expected.set(leU32(7, 0x01020304), 8 + padded.length + 8);
  assert.equal(padded.length % 8, 0);
  assert.deepEqual(enc, expected);
});

Deno.test("writeCheckpoint() save → load → save gives identical bytes", async () => {
  await withDir(async (dir) => {
    const a = join(dir, "a.safetensors");
    const b = join(dir, "b.safetensors");
    const c = join(dir, "c.safetensors");
    const { tensors, metadata } = sampleContents();
    const written = await writeCheckpoint(a, { tensors, metadata });
    const loaded = await readCheckpoint(a);
    await writeCheckpoint(b, { tensors: loaded.tensors, metadata: loaded.metadata });
    // Same contents given in reverse insertion order, as a record: still the same bytes.
    const rev = Object.fromEntries([...tensors].reverse());
    const revMeta = Object.fromEntries(Object.entries(metadata).reverse());
    await writeCheckpoint(c, { tensors: rev, metadata: revMeta });
    const [ba, bb, bc] = await Promise.all([a, b, c].map((p) => Deno.readFile(p)));
    assert.equal(ba.length, written);
    assert.deepEqual(bb, ba);
    assert.deepEqual(bc, ba);
    assert.deepEqual(encodeCheckpoint({ tensors, metadata }), ba);
    // The header lists tensors in sorted order, "10" before "2" (code-unit order).
    const text = new TextDecoder().decode(ba.subarray(8, 8 + loaded.header.headerBytes));
    assert.ok(text.indexOf('"10"') < text.indexOf('"2"'));
    assert.ok(text.startsWith('{"__metadata__":{"0":"zero",'));
    assert.equal(loaded.header.headerBytes % 8, 0);
  });
});

Deno.test("readCheckpoint() round-trips F32 and U32 values bit for bit, incl. empty and scalar", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "x.safetensors");
    const { tensors, metadata } = sampleContents();
    // Special floats by bit pattern: NaN payloads, -0, ±Inf, smallest denormal, max.
    const bits = Uint32Array.from([
      0x7fc00001,
      0xffc12345,
      0x80000000,
      0x7f800000,
      0xff800000,
      0x00000001,
      0x7f7fffff,
    ]);
    tensors.set("special", { dtype: "F32", shape: [7], data: new Float32Array(bits.buffer) });
    await writeCheckpoint(path, { tensors, metadata });
    await assert.rejects(() => readCheckpoint(path), (e) => {
      assertCkptError(e, path, "tensor special holds NaN or Inf values");
      return true;
    });
    const got = await readCheckpoint(path, { allowNonFinite: true });
    assert.deepEqual([...got.tensors.keys()], [...tensors.keys()].sort());
    for (const [name, want] of tensors) {
      const t = got.tensors.get(name)!;
      assert.equal(t.dtype, want.dtype, name);
      assert.deepEqual(t.shape, [...want.shape], name);
      assert.equal(t.data.constructor, want.data.constructor, name);
      assert.deepEqual(bytesOf(t.data), bytesOf(want.data), name);
    }
    assert.deepEqual(new Uint32Array(bytesOf(got.tensors.get("special")!.data).buffer), bits);
    assert.equal(got.tensors.get("scalar")!.data[0], 2.5);
    assert.deepEqual(got.tensors.get("scalar")!.shape, []);
    assert.equal(got.tensors.get("empty2d")!.data.length, 0);
    assert.deepEqual(got.metadata, metadata);
  });
});

Deno.test("readCheckpoint() round-trips U8, U32 and a misaligned F32", () => {
  const tensors: Record<string, HostTensor> = {
    // "a_u8" (3 bytes) puts "b_f32" at data offset 3: the reader must copy, not view.
    "a_u8": { dtype: "U8", shape: [3], data: Uint8Array.from([1, 2, 255]) },
    "b_f32": { dtype: "F32", shape: [2], data: f32(3.25, -1e-30) },
    "c_u32": { dtype: "U32", shape: [2, 1], data: Uint32Array.from([7, 2 ** 32 - 1]) },
  };
  const bytes = encodeCheckpoint({ tensors });
  const got = decodeCheckpoint(bytes);
  assert.equal(got.header.tensors.get("b_f32")!.dataOffsets[0], 3);
  for (const [name, want] of Object.entries(tensors)) {
    const t = got.tensors.get(name)!;
    assert.equal(t.dtype, want.dtype, name);
    assert.equal(t.data.constructor, want.data.constructor, name);
    assert.deepEqual(bytesOf(t.data), bytesOf(want.data), name);
  }
  assert.deepEqual([...got.tensors.get("b_f32")!.data], [3.25, Math.fround(-1e-30)]);
  assert.deepEqual(encodeCheckpoint({ tensors: got.tensors, metadata: got.metadata }), bytes);
});

Deno.test("readCheckpoint() refuses the dtypes ssd does not read, naming the dtype", () => {
  for (const dtype of ["F16", "BF16", "F64", "I64", "BOOL", "F8_E4M3"]) {
    decodeRejects(
      handBuild([{ name: "w", dtype, shape: [0], bytes: new Uint8Array(0) }]),
      `tensor "w" has dtype "${dtype}", which ssd does not read (it reads F32, U32, U8)`,
    );
  }
});

Deno.test("readCheckpoint() reads a file laid out by an independent writer", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "foreign.safetensors");
    // Python-style JSON spacing, metadata last, data in non-sorted order, a U8 tensor
    // first so the F32 after it is misaligned, no padding.
    const bytes = handBuild([
      { name: "z.mask", dtype: "U8", shape: [1], bytes: Uint8Array.from([9]) },
      { name: "m.weight", dtype: "F32", shape: [2, 2], bytes: leF32(1, 2, 3, 4) },
      { name: "a.ids", dtype: "U32", shape: [3], bytes: leU32(5, 6, 0xdeadbeef) },
      { name: "s", dtype: "F32", shape: [], bytes: leF32(-7.5) },
      { name: "e", dtype: "F32", shape: [2, 0], bytes: new Uint8Array(0) },
    ], { metadata: { "ssd.format": "1", "note": "x y" } });
    await Deno.writeFile(path, bytes);
    const got = await readCheckpoint(path);
    assert.deepEqual([...got.tensors.keys()], ["a.ids", "e", "m.weight", "s", "z.mask"]);
    assert.deepEqual([...got.tensors.get("m.weight")!.data], [1, 2, 3, 4]);
    assert.deepEqual(got.tensors.get("m.weight")!.shape, [2, 2]);
    assert.deepEqual([...got.tensors.get("a.ids")!.data], [5, 6, 0xdeadbeef]);
    assert.deepEqual([...got.tensors.get("s")!.data], [-7.5]);
    assert.deepEqual([...got.tensors.get("z.mask")!.data], [9]);
    assert.equal(got.tensors.get("e")!.data.length, 0);
    assert.deepEqual(got.metadata, { "ssd.format": "1", "note": "x y" });
    const h = await readHeader(path);
    assert.deepEqual(h.tensors.get("m.weight"), {
      dtype: "F32",
      shape: [2, 2],
      dataOffsets: [1, 17],
    });
    assert.equal(h.fileBytes, bytes.length);
    // Padded, metadata-first variant (the Rust writer's layout) reads the same.
    const padded = handBuild([
      { name: "m.weight", dtype: "F32", shape: [2, 2], bytes: leF32(1, 2, 3, 4) },
    ], { metaFirst: true, pad: true });
    assert.deepEqual([...decodeCheckpoint(padded).tensors.get("m.weight")!.data], [1, 2, 3, 4]);
  });
});

Deno.test("readCheckpoint() rejects a file without ssd.format unless allowForeign", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "hf.safetensors");
    await Deno.writeFile(
      path,
      handBuild([{ name: "w", dtype: "F32", shape: [1], bytes: leF32(4) }], { metadata: null }),
    );
    await readRejects(path, 'no "ssd.format"', "supported format versions: 1", "ssd inspect");
    const got = await readCheckpoint(path, { allowForeign: true });
    assert.deepEqual([...got.tensors.get("w")!.data], [4]);
    assert.deepEqual(got.metadata, {});
    // An unknown version is rejected even for foreign files.
    const v2 = join(dir, "v2.safetensors");
    await Deno.writeFile(
      v2,
      handBuild([{ name: "w", dtype: "F32", shape: [1], bytes: leF32(4) }], {
        metadata: { "ssd.format": "2" },
      }),
    );
    await readRejects(v2, 'format version "2"', "supported: 1", "upgrade ssd");
    await assert.rejects(() => readHeader(v2, { allowForeign: true }), CheckpointError);
  });
});

Deno.test("readCheckpoint() with a filter reads only the chosen tensors of a large file", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "big.safetensors");
    // A 64 Mi-element tensor, written as a sparse file: the header alone says how big.
    const big = 64 * 1024 * 1024;
    const head = handBuild([
      { name: "small", dtype: "F32", shape: [2], bytes: leF32(0.25, 8) },
      {
        name: "big",
        dtype: "F32",
        shape: [big],
        bytes: new Uint8Array(0),
        offsets: [8, 8 + 4 * big],
      },
    ], { pad: true });
    await Deno.writeFile(path, head);
    await Deno.truncate(path, head.length + 4 * big);
    const h = await readHeader(path);
    assert.deepEqual(h.tensors.get("big")!.shape, [big]);
    const got = await readCheckpoint(path, { filter: (n) => n === "small" });
    assert.deepEqual([...got.tensors.keys()], ["small"]);
    assert.deepEqual([...got.tensors.get("small")!.data], [0.25, 8]);
    await Deno.truncate(path, head.length + 4 * big - 1);
    await readRejects(path, "is truncated", '"big"');
  });
});

// ---------------------------------------------------------------------------
// Rejection of bad files

Deno.test("readCheckpoint() rejects a missing file and a folder", async () => {
  await withDir(async (dir) => {
    await readRejects(join(dir, "nope.safetensors"), "not found", "check the path");
    await readRejects(dir, "is not a file");
  });
});

Deno.test("readCheckpoint() rejects a file truncated at any point", async () => {
  await withDir(async (dir) => {
    const { tensors, metadata } = sampleContents();
    const full = encodeCheckpoint({ tensors, metadata });
    const n = Number(new DataView(full.buffer).getBigUint64(0, true));
    // Every cut, in memory.
    for (let cut = 0; cut < full.length; cut++) decodeRejects(full.slice(0, cut), "truncated");
    // Cuts through each region, through the file path.
    const path = join(dir, "cut.safetensors");
    for (const cut of [0, 3, 7, 8, 9, 8 + (n >> 1), 8 + n - 1, 8 + n, 8 + n + 5, full.length - 1]) {
      await Deno.writeFile(path, full.slice(0, cut));
      await readRejects(path, "truncated");
    }
  });
});

Deno.test("readCheckpoint() rejects bit flips in the header with a CheckpointError", async () => {
  const { tensors, metadata } = sampleContents();
  const good = encodeCheckpoint({ tensors, metadata });
  const n = Number(new DataView(good.buffer).getBigUint64(0, true));
  const header = good.subarray(8, 8 + n);
  // Byte position (not UTF-16 index: the header holds non-ASCII names) of `s` in the file.
  const at = (s: string) => {
    const needle = new TextEncoder().encode(s);
    for (let i = 0; i + needle.length <= header.length; i++) {
      if (needle.every((b, j) => header[i + j] === b)) return 8 + i;
    }
    throw new Error(`${s} not in header`);
  };
  const flip = (at: number, mask: number) => {
    const b = good.slice();
    b[at] ^= mask;
    return b;
  };
  // Targeted flips: a brace (JSON broken), a dtype letter, the format version, a shape digit.
  decodeRejects(flip(8, 0x01), "not valid JSON");
  decodeRejects(flip(at('"F32"') + 3, 0x01), 'dtype "F33", which ssd does not read');
  decodeRejects(flip(at('"ssd.format":"1"') + 14, 0x01), 'format version "0"');
  decodeRejects(
    flip(at('"transformer.wte.weight":{"dtype":"F32","shape":[5,3]') + 49, 0x02),
    '"transformer.wte.weight"',
    "needs 84 bytes",
  );
  decodeRejects(flip(at('"shape":[5,3]') + 8, 0x80), "not valid UTF-8");
  // Every single-bit flip of prefix and header: never a crash, and every flip of the
  // length prefix or of the JSON structure is caught. Flips inside names or metadata
  // strings can give another valid file (safetensors has no checksum), so those may pass.
  let rejected = 0;
  let total = 0;
  for (let pos = 0; pos < 8 + n; pos++) {
    for (let bit = 0; bit < 8; bit++) {
      total++;
      try {
        decodeCheckpoint(flip(pos, 1 << bit));
        assert.ok(pos >= 8, `flip of prefix byte ${pos} bit ${bit} was accepted`);
      } catch (e) {
        assertCkptError(e);
        rejected++;
      }
    }
  }
  assert.ok(rejected / total > 0.6, `only ${rejected} of ${total} flips rejected`);
  await Promise.resolve();
});

Deno.test("readCheckpoint() rejects an absurd or oversized header length", async () => {
  await withDir(async (dir) => {
    const good = encodeCheckpoint(sampleContents());
    const withLen = (len: bigint) => {
      const b = good.slice();
      new DataView(b.buffer).setBigUint64(0, len, true);
      return b;
    };
    const path = join(dir, "len.safetensors");
    await Deno.writeFile(path, withLen(BigInt(MAX_HEADER_BYTES) + 1n));
    await readRejects(path, "header length 100000001 bytes", "exceeds the limit");
    decodeRejects(withLen(2n ** 64n - 1n), "exceeds the limit");
    await Deno.writeFile(path, withLen(BigInt(good.length)));
    await readRejects(path, "truncated", `header length is ${good.length} bytes`);
    decodeRejects(withLen(0n), "too short");
  });
});

Deno.test("readCheckpoint() rejects a header that is not a JSON object", () => {
  decodeRejects(handBuild([], { headerText: "[1, 2]   " }), "an array, not a JSON object");
  decodeRejects(handBuild([], { headerText: "null" }), "null, not a JSON object");
  decodeRejects(handBuild([], { headerText: '{"a": 1' }), "not valid JSON");
  decodeRejects(
    handBuild([], { headerText: '{"__metadata__": [], "x": 1}' }),
    "__metadata__ is an array",
  );
  decodeRejects(
    handBuild([], { metadata: { "ssd.format": "1", "ssd.train": { step: 1 } } }),
    '__metadata__["ssd.train"] is an object, not a string',
  );
  decodeRejects(
    handBuild([], { headerText: '{"__metadata__": {"ssd.format": "1"}, "w": [1]}' }),
    'tensor "w" has an array as its entry',
  );
});

Deno.test("readCheckpoint() rejects bad dtypes, shapes and offsets", () => {
  const w = (over: Partial<RawEntry>) =>
    handBuild([{ name: "w", dtype: "F32", shape: [2], bytes: leF32(1, 2), ...over }]);
  decodeRejects(w({ dtype: "F33" }), 'tensor "w" has dtype "F33"', "it reads F32");
  decodeRejects(w({ dtype: "f32" }), 'dtype "f32", which ssd does not read');
  decodeRejects(w({ shape: [-2] }), "shape [-2], not an array of non-negative integers");
  decodeRejects(w({ shape: [1.5] }), "not an array of non-negative integers");
  decodeRejects(w({ shape: "2" }), "not an array of non-negative integers");
  decodeRejects(w({ offsets: [8, 0] }), "data_offsets [8,0], not [begin, end]");
  decodeRejects(w({ offsets: [0] }), "not [begin, end]");
  decodeRejects(w({ offsets: [0, "8"] }), "not [begin, end]");
  decodeRejects(w({ shape: [3] }), "data_offsets [0, 8] (8 bytes) but F32 [3] needs 12 bytes");
  decodeRejects(w({ dtype: "U8" }), "needs 2 bytes");
  decodeRejects(w({ offsets: [0, 8], shape: [2], bytes: leF32(1) }), "truncated", '"w" ends');
});

Deno.test("readCheckpoint() rejects overlaps, gaps and trailing bytes", () => {
  const two = (bOffsets: number[], extra?: Uint8Array) =>
    handBuild([
      { name: "a", dtype: "F32", shape: [2], bytes: leF32(1, 2) },
      { name: "b", dtype: "F32", shape: [2], bytes: leF32(3, 4), offsets: bOffsets },
    ], { extraData: extra });
  decodeRejects(two([4, 12]), 'tensors "a" [0, 8] and "b" [4, 12] overlap');
  decodeRejects(two([0, 8]), "overlap");
  // b at [12, 20) leaves [8, 12) uncovered; the data section is 16 bytes + 4 extra.
  decodeRejects(two([12, 20], new Uint8Array(4)), "data bytes [8, 12) belong to no tensor");
  decodeRejects(two([8, 16], new Uint8Array(3)), "3 trailing bytes after the last tensor");
  // A zero-size tensor inside another's bytes is an overlap too.
  decodeRejects(
    handBuild([
      { name: "a", dtype: "F32", shape: [2], bytes: leF32(1, 2) },
      { name: "e", dtype: "F32", shape: [0], bytes: new Uint8Array(0), offsets: [4, 4] },
    ]),
    '"a" [0, 8] and "e" [4, 4] overlap',
  );
  // An empty data section with no tensors is fine.
  assert.equal(decodeCheckpoint(handBuild([])).tensors.size, 0);
});

// ---------------------------------------------------------------------------
// Config checks
