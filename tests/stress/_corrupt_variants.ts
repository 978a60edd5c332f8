/**
 * The corrupted variants of one real checkpoint for tests/stress/corrupt_checkpoints.ts:
 * each is a file (or a FIFO, a folder, a link) derived from the bytes `ssd train` wrote,
 * with what every entry point should do with it. Built with an independent layout
 * (JSON.stringify of the header object), not with core/'s writer, so that a bug there
 * cannot hide one here.
 */

/** The commands a variant is run through. */
export const ENTRIES = ["inspect", "eval", "generate", "moefy", "resume"] as const;
/** One of `ENTRIES`. */
export type Entry = typeof ENTRIES[number];
/** What an entry point should do with a variant. */
export type Outcome = "refuse" | "accept";

/** A file to try, and what each entry point should do with it. */
export interface Variant {
  /** File name stem and label. */
  name: string;
  /** The expected outcome per entry point. */
  expect: Record<Entry, Outcome>;
  /** What `ssd inspect` must print when it accepts (e.g. the config mismatches). */
  inspectSays?: RegExp;
  /** Creates the variant at `path` (a file, or something else for the special cases). */
  make: (path: string) => Promise<void>;
}

const all = (o: Outcome): Record<Entry, Outcome> => ({
  inspect: o,
  eval: o,
  generate: o,
  moefy: o,
  resume: o,
});
/** Every command refuses. */
const REFUSE = all("refuse");
/** Every command loads it. */
const ACCEPT = all("accept");
/** A valid header with bad data or a bad fit to the model: only inspect shows it. */
const HEADER_OK = { ...REFUSE, inspect: "accept" } as const;
/** Fine for the weights, not for resuming (no or unusable training state). */
const NO_RESUME = { ...ACCEPT, resume: "refuse" } as const;

type Json = Record<string, unknown>;
interface RawEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** The parsed base checkpoint. */
interface Base {
  bytes: Uint8Array;
  n: number;
  header: Json;
  data: Uint8Array;
}

function parse(bytes: Uint8Array): Base {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  return { bytes, n, header, data: bytes.subarray(8 + n) };
}

/** A file from a header text and data, the length prefix as given or the true one. */
function file(text: string, data: Uint8Array, n?: bigint): Uint8Array {
  const json = new TextEncoder().encode(text);
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded + data.length).fill(0x20, 8, 8 + padded);
  new DataView(out.buffer).setBigUint64(0, n ?? BigInt(padded), true);
  out.set(json, 8);
  out.set(data, 8 + padded);
  return out;
}

const clone = <T>(v: T): T => structuredClone(v);
const tensorNames = (h: Json) => Object.keys(h).filter((k) => k !== "__metadata__");

/** Lays the tensors out again (sorted), after `edit` changed the map of tensor bytes. */
function relayout(
  b: Base,
  edit: (t: Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>) => void,
  meta: Json = b.header.__metadata__ as Json,
): Uint8Array {
  const t = new Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>();
  for (const name of tensorNames(b.header)) {
    const e = b.header[name] as RawEntry;
    t.set(name, { ...e, bytes: b.data.slice(e.data_offsets[0], e.data_offsets[1]) });
  }
  edit(t);
  const header: Json = { __metadata__: meta };
  const chunks: Uint8Array[] = [];
  let at = 0;
  for (const name of [...t.keys()].sort()) {
    const { dtype, shape, bytes } = t.get(name)!;
    header[name] = { dtype, shape, data_offsets: [at, at + bytes.length] };
    chunks.push(bytes);
    at += bytes.length;
  }
  const data = new Uint8Array(at);
  let p = 0;
  for (const c of chunks) {
    data.set(c, p);
    p += c.length;
  }
  return file(JSON.stringify(header), data);
}

const W = "transformer.h.0.mlp.c_fc.weight";
const WTE = "transformer.wte.weight";
const LN1 = "transformer.h.0.ln_1.weight";
const LN2 = "transformer.h.0.ln_2.weight";

/** The header with tensor `name`'s entry patched. */
function entry(b: Base, name: string, patch: Json): Uint8Array {
  const h = clone(b.header);
  h[name] = { ...(h[name] as Json), ...patch };
  return file(JSON.stringify(h), b.data);
}

/** The header with metadata key `key` set (or removed, for undefined). */
function meta(b: Base, key: string, value: unknown): Uint8Array {
  const h = clone(b.header);
  const m = { ...(h.__metadata__ as Json) };
  if (value === undefined) delete m[key];
  else m[key] = value;
  h.__metadata__ = m;
  return file(JSON.stringify(h), b.data);
}

/** The metadata's JSON entry `key` edited (it is parsed, edited, and stored again). */
function metaEdit(b: Base, key: string, edit: (v: Json) => unknown): Uint8Array {
  const m = b.header.__metadata__ as Record<string, string>;
  return meta(b, key, JSON.stringify(edit(JSON.parse(m[key]))));
}

/** The data with element `i` of F32 tensor `name` set to `v`. */
function poison(b: Base, name: string, v: number, i = 0): Uint8Array {
  const out = b.bytes.slice();
  const at = 8 + b.n + (b.header[name] as RawEntry).data_offsets[0] + 4 * i;
  new DataView(out.buffer).setFloat32(at, v, true);
  return out;
}

const write = (bytes: Uint8Array) => (path: string) => Deno.writeFile(path, bytes);

/** Every variant of the checkpoint at `basePath`. */
export function variants(basePath: string, baseBytes: Uint8Array): Variant[] {
  const b = parse(baseBytes);
  const size = b.bytes.length;
  const v: Variant[] = [];
  const add = (name: string, expect: Record<Entry, Outcome>, bytes: Uint8Array) =>
    v.push({ name, expect, make: write(bytes) });

  // Valid files laid out differently: every command must load them.
  add("identity", ACCEPT, b.bytes);
  add("extra_padding", ACCEPT, file(JSON.stringify(b.header) + " ".repeat(64), b.data));
  add("foreign_meta_key", ACCEPT, meta(b, "origin", "copied by hand"));
  add("denormal", ACCEPT, poison(b, "transformer.ln_f.bias", 1e-45, 1));
  {
    // Data order reversed (offsets still cover the section exactly).
    const h = clone(b.header);
    const names = tensorNames(h).reverse();
    const chunks = names.map((n) => {
      const [s, e] = (b.header[n] as RawEntry).data_offsets;
      return b.data.slice(s, e);
    });
    let at = 0;
    const data = new Uint8Array(b.data.length);
    names.forEach((n, i) => {
      (h[n] as RawEntry).data_offsets = [at, at + chunks[i].length];
      data.set(chunks[i], at);
      at += chunks[i].length;
    });
    add("data_order_reversed", ACCEPT, file(JSON.stringify(h), data));
  }
  v.push({
    name: "symlink_to_valid",
    expect: ACCEPT,
    make: (p) => Deno.symlink(basePath, p),
  });

  // Truncations at every structural boundary.
  const cuts = [0, 1, 4, 7, 8, 12, 8 + (b.n >> 1), 8 + b.n - 1, 8 + b.n, 8 + b.n + 1];
  cuts.push(8 + b.n + (b.data.length >> 1), size - 4, size - 1);
  for (const c of cuts) add(`truncated_at_${c}`, REFUSE, b.bytes.slice(0, c));
  add("appended_bytes", REFUSE, file(JSON.stringify(b.header), new Uint8Array([...b.data, 1, 2])));

  // Header-length lies.
  const lie = (n: bigint) => {
    const out = b.bytes.slice();
    new DataView(out.buffer).setBigUint64(0, n, true);
    return out;
  };
  for (const n of [0n, 1n, BigInt(b.n - 8), BigInt(b.n + 8), BigInt(size), 100_000_001n]) {
    add(`header_len_${n}`, REFUSE, lie(n));
  }
  add("header_len_2^63", REFUSE, lie(2n ** 63n));
  add("header_len_2^64-1", REFUSE, lie(2n ** 64n - 1n));

  // Broken JSON.
  const text = JSON.stringify(b.header);
  add("json_brace_to_bracket", REFUSE, file("[" + text.slice(1), b.data));
  add("json_trailing_garbage", REFUSE, file(text + "}x", b.data));
  add("json_unterminated", REFUSE, file(text.slice(0, -2), b.data));
  add("json_array", REFUSE, file("[]", b.data));
  add("json_null", REFUSE, file("null", b.data));
  add("json_number", REFUSE, file("42", b.data));
  {
    const bad = file(text, b.data);
    bad[8 + 20] = 0xff; // not UTF-8
    add("json_invalid_utf8", REFUSE, bad);
  }

  // Metadata.
  add(
    "meta_not_object",
    REFUSE,
    (() => {
      const h = clone(b.header);
      h.__metadata__ = ["ssd.format", "1"];
      return file(JSON.stringify(h), b.data);
    })(),
  );
  add("meta_value_number", REFUSE, meta(b, "ssd.format", 1));
  add("meta_format_2", REFUSE, meta(b, "ssd.format", "2"));
  // inspect shows any safetensors file, ssd's or not; the others need ssd's metadata.
  v.push({
    name: "meta_no_format",
    expect: HEADER_OK,
    inspectSays: /no ssd metadata: not written by ssd/,
    make: write(meta(b, "ssd.format", undefined)),
  });
  v.push({
    name: "meta_no_config",
    expect: HEADER_OK,
    inspectSays: /^ {2}config +\(none\)$/m,
    make: write(meta(b, "ssd.config", undefined)),
  });
  add("meta_config_not_json", REFUSE, meta(b, "ssd.config", "{vocab: 256"));
  add("meta_config_array", REFUSE, meta(b, "ssd.config", "[1,2]"));
  v.push({
    name: "meta_config_invalid",
    expect: HEADER_OK,
    inspectSays: /n_head/,
    make: write(metaEdit(b, "ssd.config", (c) => ({ ...c, n_head: 3 }))),
  });
  v.push({
    name: "meta_config_wider",
    expect: HEADER_OK,
    inspectSays: /Mismatches with the config/,
    make: write(metaEdit(b, "ssd.config", (c) => ({ ...c, d_model: 64 }))),
  });
  v.push({
    name: "meta_config_more_layers",
    expect: HEADER_OK,
    inspectSays: /Mismatches with the config \(\d+\).*\n.*is missing/,
    make: write(metaEdit(b, "ssd.config", (c) => ({ ...c, n_layer: 3 }))),
  });
  add("meta_moe_not_json", REFUSE, meta(b, "ssd.moe", "{experts"));
  add(
    "meta_moe_zero_experts",
    { ...REFUSE, inspect: "accept" },
    meta(b, "ssd.moe", '{"experts":0,"top_k":0,"router":"centroid","layers":[]}'),
  );

  // Dtypes.
  for (const d of ["F16", "BF16", "F64", "BOOL", "I64", "f32", "X"]) {
    add(`dtype_${d}`, REFUSE, entry(b, W, { dtype: d }));
  }
  add("dtype_number", REFUSE, entry(b, W, { dtype: 7 }));
  v.push({
    name: "dtype_U32_same_size",
    expect: HEADER_OK,
    inspectSays: /has dtype U32, expected F32/,
    make: write(entry(b, W, { dtype: "U32" })),
  });

  // Shapes.
  const shapeOf = (n: string) => (b.header[n] as RawEntry).shape;
  const [dff, C] = shapeOf(W);
  for (
    const [name, shape] of [
      ["negative", [-dff, C]],
      ["fraction", [dff + 0.5, C]],
      ["string", "128x32"],
      ["null", null],
      ["too_small", [dff, C - 1]],
      ["huge", [2 ** 31, 2 ** 31]],
      ["unsafe_int", [2 ** 53 + 2, 1]],
      ["zero", [0, C]],
    ] as [string, unknown][]
  ) add(`shape_${name}`, REFUSE, entry(b, W, { shape }));
  v.push({
    name: "shape_transposed",
    expect: HEADER_OK,
    inspectSays: /has shape \[32, 128\], expected \[128, 32\]/,
    make: write(entry(b, W, { shape: [C, dff] })),
  });
  v.push({
    name: "shape_extra_dim",
    expect: HEADER_OK,
    inspectSays: /has shape \[1, 128, 32\]/,
    make: write(entry(b, W, { shape: [1, dff, C] })),
  });

  // Offsets.
  const [s, e] = (b.header[W] as RawEntry).data_offsets;
  for (
    const [name, offsets] of [
      ["beyond_data", [s + b.data.length, e + b.data.length]],
      ["reversed", [e, s]],
      ["negative", [-4, e - s - 4]],
      ["fraction", [s + 0.5, e + 0.5]],
      ["one_number", [s]],
      ["strings", [String(s), String(e)]],
      ["shifted", [s + 4, e + 4]],
    ] as [string, unknown][]
  ) add(`offsets_${name}`, REFUSE, entry(b, W, { data_offsets: offsets }));
  {
    // Two tensors of one size on the same bytes: an overlap, and a gap where one was.
    const h = clone(b.header);
    (h[LN2] as RawEntry).data_offsets = [...(h[LN1] as RawEntry).data_offsets];
    add("offsets_overlap", REFUSE, file(JSON.stringify(h), b.data));
  }

  // Tensors missing, extra, renamed.
  const mismatch = (name: string, says: RegExp, edit: Parameters<typeof relayout>[1]) =>
    v.push({ name, expect: HEADER_OK, inspectSays: says, make: write(relayout(b, edit)) });
  mismatch("tensor_missing", /"transformer\.ln_f\.bias" is missing/, (t) => {
    t.delete("transformer.ln_f.bias");
  });
  mismatch("tensor_extra", /unexpected tensor "lm_head\.weight"/, (t) => {
    t.set("lm_head.weight", { ...t.get(WTE)! });
  });
  mismatch("tensor_renamed", /unexpected tensor "transformer\.h\.0\.mlp\.c_fc\.weigth"/, (t) => {
    t.set(W.replace("weight", "weigth"), t.get(W)!);
    t.delete(W);
  });
  add(
    "moments_missing",
    NO_RESUME,
    relayout(b, (t) => {
      for (const n of [...t.keys()]) if (n.startsWith("optim.")) t.delete(n);
    }),
  );

  // Non-finite values.
  add("nan_c_fc", HEADER_OK, poison(b, W, NaN, 3));
  add("inf_wte", HEADER_OK, poison(b, WTE, Infinity, 0));
  add("neg_inf_ln_f_bias", HEADER_OK, poison(b, "transformer.ln_f.bias", -Infinity, 0));
  add("nan_last_element", HEADER_OK, poison(b, W, NaN, dff * C - 1));
  const moment = "optim.v." + W;
  add("nan_moment", { ...ACCEPT, moefy: "refuse", resume: "refuse" }, poison(b, moment, NaN, 0));

  // Training state.
  const train = (name: string, expect: Record<Entry, Outcome>, edit: (t: Json) => unknown) =>
    add(`train_${name}`, expect, metaEdit(b, "ssd.train", edit));
  train("step_1e9", REFUSE, (t) => ({ ...t, step: 1e9 }));
  train("step_negative", REFUSE, (t) => ({ ...t, step: -1 }));
  train("step_fraction", REFUSE, (t) => ({ ...t, step: 1.5 }));
  train("step_string", REFUSE, (t) => ({ ...t, step: "2" }));
  train("unknown_key", REFUSE, (t) => ({ ...t, stepz: 2 }));
  train("phase_bad", REFUSE, (t) => ({ ...t, phase: "sprase" }));
  train("sampler_rng_short", REFUSE, (t) => ({
    ...t,
    sampler: { ...(t.sampler as Json), rng: [1, 2] },
  }));
  train("sampler_batch_zero", REFUSE, (t) => ({
    ...t,
    sampler: { ...(t.sampler as Json), batch: 0 },
  }));
  train("lr_nan_string", REFUSE, (t) => ({
    ...t,
    lr_schedule: { ...(t.lr_schedule as Json), maxLr: "NaN" },
  }));
  train("config_steps_negative", REFUSE, (t) => ({
    ...t,
    config: { ...(t.config as Json), steps: -5 },
  }));
  train("tokens_seen_negative", REFUSE, (t) => ({ ...t, tokens_seen: -1 }));
  train("schedule_garbage", NO_RESUME, (t) => ({ ...t, schedule: { version: 99 } }));
  train("sampler_other_batch", NO_RESUME, (t) => ({
    ...t,
    sampler: { ...(t.sampler as Json), batch: 3 },
  }));
  add("train_not_json", REFUSE, meta(b, "ssd.train", "{step: 2"));
  add("train_array", REFUSE, meta(b, "ssd.train", "[2]"));
  add("train_missing", NO_RESUME, meta(b, "ssd.train", undefined));

  // Things that are not checkpoint files.
  v.push({
    name: "fifo",
    expect: REFUSE,
    make: async (p) => {
      const r = await new Deno.Command("mkfifo", { args: [p] }).output();
      if (!r.success) throw new Error("mkfifo failed");
    },
  });
  v.push({ name: "directory", expect: REFUSE, make: (p) => Deno.mkdir(p) });
  v.push({ name: "empty_file", expect: REFUSE, make: (p) => Deno.writeFile(p, new Uint8Array()) });
  v.push({ name: "dev_null_link", expect: REFUSE, make: (p) => Deno.symlink("/dev/null", p) });
  v.push({
    name: "dangling_link",
    expect: REFUSE,
    make: (p) => Deno.symlink(p + ".nowhere", p),
  });
  v.push({
    name: "text_file",
    expect: REFUSE,
    make: (p) => Deno.writeTextFile(p, "this is not a checkpoint\n".repeat(10)),
  });
  return v;
}
