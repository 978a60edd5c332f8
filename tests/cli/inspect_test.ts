/**
 * `ssd inspect` as a real subprocess: the tables (config, parameter count,
 * tensor shapes, optimizer summary, training state, MoE), `--json` equal to
 * `runInspect()`, `--all`, and bad input (one line, no output, no file).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { paramCount, paramShapes } from "../../core/nn/config.ts";
import { runInspect } from "../../pipelines/inspect.ts";
import { MISMATCHES, writeMismatched } from "../pipelines/_mismatched_checkpoint.ts";
import {
  listDir,
  TINY_CONFIG,
  truncateCopy,
  writeTinyCheckpoint,
} from "../pipelines/_tiny_checkpoint.ts";
import { assertOneErrorLine, ssd } from "./_ssd.ts";

const dir = await Deno.makeTempDir({ prefix: "ssd_cli_inspect_" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
const ckpt = join(dir, "tiny.safetensors");
await writeTinyCheckpoint(ckpt, { optimizer: true });

Deno.test("ssd inspect shows the config, parameter count, tensor shapes and training state", async () => {
  const r = await ssd(["inspect", ckpt]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  assert.match(r.stdout, /^ {2}format +safetensors, ssd format 1$/m);
  for (const [k, v] of Object.entries(TINY_CONFIG)) {
    assert.match(r.stdout, new RegExp(`^  ${k} +${v}$`, "m"), k);
  }
  assert.match(r.stdout, new RegExp(`^  parameters +${paramCount(TINY_CONFIG)}$`, "m"));
  const shapes = paramShapes(TINY_CONFIG);
  assert.match(r.stdout, new RegExp(`^Tensors \\(${shapes.size}\\)$`, "m"));
  for (const [name, shape] of shapes) {
    const numel = shape.reduce((a, b) => a * b, 1);
    const re = new RegExp(
      `^  ${name.replaceAll(".", "\\.")} +F32 +\\[${shape.join(", ")}\\] +${numel}$`,
      "m",
    );
    assert.match(r.stdout, re, name);
  }
  assert.doesNotMatch(r.stdout, /^ {2}optim\./m, "moments are summarised");
  assert.match(r.stdout, new RegExp(`^  moments +${2 * shapes.size} tensors`, "m"));
  assert.match(r.stdout, /^ {2}step +12$/m);
  assert.match(r.stdout, /^ {2}tokens seen +3072$/m);
  assert.match(r.stdout, /^ {2}phase +dense$/m);
  assert.match(r.stdout, /^ {2}phase history +\{"event":"switch"/m);
  assert.match(r.stdout, /^ {2}tokenizer +bytes-v1$/m);
});

Deno.test("ssd inspect --json equals runInspect(); --all lists the moments", async () => {
  const r = await ssd(["inspect", ckpt, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  assert.deepEqual(
    doc,
    JSON.parse(JSON.stringify(await runInspect({ checkpoint: ckpt, all: false }))),
  );
  assert.equal(doc.parameters, paramCount(TINY_CONFIG));
  assert.deepEqual(doc.config, { ...TINY_CONFIG });

  const all = await ssd(["inspect", ckpt, "--all"]);
  assert.equal(all.code, 0, all.stderr);
  const shape = paramShapes(TINY_CONFIG).get("transformer.wte.weight")!;
  assert.match(
    all.stdout,
    new RegExp(`^  optim\\.v\\.transformer\\.wte\\.weight +F32 +\\[${shape.join(", ")}\\]`, "m"),
  );
  const allJson = JSON.parse((await ssd(["inspect", ckpt, "--all", "--json"])).stdout);
  assert.equal(allJson.optimizer.tensors.length, 2 * paramShapes(TINY_CONFIG).size);
});

Deno.test("ssd inspect shows the MoE layout of an MoE checkpoint", async () => {
  const path = join(dir, "moe.safetensors");
  await writeTinyCheckpoint(path, {
    train: null,
    moe: { experts: 4, top_k: 1, router: "centroid" },
    extra: {
      "transformer.h.0.mlp.router.weight": {
        dtype: "F32",
        shape: [4, TINY_CONFIG.d_model],
        data: new Float32Array(4 * TINY_CONFIG.d_model),
      },
    },
  });
  const r = await ssd(["inspect", path]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^MoE$/m);
  assert.match(r.stdout, /^ {2}experts +4 \(8 neurons each\)$/m);
  assert.match(r.stdout, /^ {2}top_k +1$/m);
  assert.match(r.stdout, /^ {2}router +centroid$/m);
  assert.match(r.stdout, /^ {2}router layers +0$/m);
  assert.match(r.stdout, /^Training state\n {2}\(none\)$/m);
  assert.match(r.stdout, /^ {2}\(no moments: weights only\)$/m);
});

Deno.test("ssd inspect lists the tensors that do not fit the config and exits 0", async () => {
  const path = join(dir, "mismatch.safetensors");
  await writeMismatched(ckpt, path);
  const r = await ssd(["inspect", path]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  const section = `Mismatches with the config (3): the other commands refuse this file\n` +
    MISMATCHES.map((m) => `  ${m}`).join("\n") + "\n\n";
  assert.ok(r.stdout.includes(section), r.stdout);
  assert.match(r.stdout, /^ {2}lm_head\.weight +F32 +\[256, 16\]/m, "still listed");
  const ok = await ssd(["inspect", ckpt]);
  assert.doesNotMatch(ok.stdout, /Mismatches/, "nothing to say about a matching file");
  const doc = JSON.parse((await ssd(["inspect", path, "--json"])).stdout);
  assert.deepEqual(doc.mismatches, MISMATCHES);
});

Deno.test("ssd inspect: bad input exits non-zero with one line and no output", async () => {
  const cut = join(dir, "cut.safetensors");
  await truncateCopy(ckpt, cut, (await Deno.stat(ckpt)).size - 8);
  const flipped = join(dir, "flipped.safetensors");
  const bytes = await Deno.readFile(ckpt);
  bytes[8] ^= 0x20; // '{' → '['
  await Deno.writeFile(flipped, bytes);
  const text = join(dir, "notes.txt");
  await Deno.writeTextFile(text, "just some notes\n");
  const before = await listDir(dir);
  const cases: [string[], number, RegExp][] = [
    [[join(dir, "missing.safetensors")], 1, /Checkpoint file not found/],
    [[cut], 1, /cut\.safetensors/],
    [[flipped], 1, /flipped\.safetensors/],
    [[text], 1, /notes\.txt/],
    [[dir], 1, /is not a file \(it is a folder\)/],
    [[ckpt, "--bogus"], 2, /unknown option '--bogus'/],
    [[], 2, /missing required argument 'checkpoint'/],
  ];
  for (const [args, code, re] of cases) {
    const r = await ssd(["inspect", ...args]);
    const line = assertOneErrorLine(r, code);
    assert.match(line, re, args.join(" "));
    assert.equal(r.stdout, "", `nothing on stdout: ${args.join(" ")}`);
  }
  assert.deepEqual(await listDir(dir), before, "no file created");
});
