/**
 * `cli/_run.ts` in process: exit codes, the one error line, the `SSD_DEBUG`
 * stack trace, and the global `--no-autotune` flag.
 */
import assert from "node:assert/strict";
import { Command, InvalidArgumentError } from "commander";
import { ConfigError, GpuError } from "../../core/errors.ts";
import { type CliIo, EXIT_ERROR, EXIT_OK, EXIT_USAGE, runCli } from "../../cli/_run.ts";
import { buildProgram } from "../../cli/main.ts";

interface Captured extends CliIo {
  stdout: string;
  stderr: string;
}

function capture(debug = false): Captured {
  const io: Captured = {
    stdout: "",
    stderr: "",
    debug,
    out: (t) => void (io.stdout += t),
    err: (t) => void (io.stderr += t),
  };
  return io;
}

/** A program whose one subcommand throws `e`. */
function throwing(e: unknown): Command {
  return new Command("ssd").addCommand(
    new Command("boom").action(() => {
      throw e;
    }),
  );
}

Deno.test("runCli() prints an SsdError as one line and returns 1", async () => {
  const io = capture();
  const code = await runCli(throwing(new ConfigError("train: --steps must be > 0, got -3")), [
    "boom",
  ], io);
  assert.equal(code, EXIT_ERROR);
  assert.equal(io.stderr, "ssd: train: --steps must be > 0, got -3\n");
});

Deno.test("runCli() flattens a multi-line SsdError to one line", async () => {
  const io = capture();
  await runCli(throwing(new GpuError("shader failed\n  12:3 unknown identifier")), ["boom"], io);
  assert.equal(io.stderr, "ssd: shader failed 12:3 unknown identifier\n");
});

Deno.test("runCli() reports a file-system error as a user error", async () => {
  const io = capture();
  const missing = () => void Deno.readFileSync("/nonexistent/ckpt.safetensors");
  const code = await runCli(
    new Command("ssd").addCommand(new Command("boom").action(missing)),
    ["boom"],
    io,
  );
  assert.equal(code, EXIT_ERROR);
  assert.match(io.stderr, /^ssd: No such file or directory.*\/nonexistent\/ckpt\.safetensors'?\n$/);
});

Deno.test("runCli() reports a bug in one line with the SSD_DEBUG hint", async () => {
  const io = capture();
  const code = await runCli(throwing(new TypeError("x is undefined")), ["boom"], io);
  assert.equal(code, EXIT_ERROR);
  assert.equal(
    io.stderr,
    "ssd: internal error: x is undefined (rerun with SSD_DEBUG=1 to see the stack trace)\n",
  );
});

Deno.test("runCli() adds the stack trace under SSD_DEBUG", async () => {
  const io = capture(true);
  await runCli(throwing(new TypeError("x is undefined")), ["boom"], io);
  const lines = io.stderr.trimEnd().split("\n");
  assert.equal(lines[0], "ssd: internal error: x is undefined");
  assert.match(lines[1], /^TypeError: x is undefined$/);
  assert.ok(lines.slice(2).some((l) => /run_test\.ts:\d+:\d+/.test(l)), io.stderr);
});

Deno.test("runCli() handles a thrown non-Error value", async () => {
  const io = capture();
  assert.equal(await runCli(throwing("plain string"), ["boom"], io), EXIT_ERROR);
  assert.match(io.stderr, /^ssd: internal error: plain string \(rerun/);
});

Deno.test("runCli() returns 2 on an invalid option value and names the command", async () => {
  const io = capture();
  const program = new Command("ssd").addCommand(
    new Command("train").option("--steps <n>", "steps", (v) => {
      const n = Number(v);
      if (!Number.isInteger(n)) throw new InvalidArgumentError("not an integer");
      return n;
    }).action(() => {}),
  );
  const code = await runCli(program, ["train", "--steps", "abc"], io);
  assert.equal(code, EXIT_USAGE);
  assert.equal(io.stderr.split("\n").length, 2, io.stderr); // one line + final newline
  assert.match(io.stderr, /^ssd: .*--steps.*\(see 'ssd train --help'\)\n$/);
});

Deno.test("runCli() sends --help to stdout with exit 0", async () => {
  const io = capture();
  assert.equal(await runCli(buildProgram(), ["device", "--help"], io), EXIT_OK);
  assert.match(io.stdout, /^Usage: ssd device/);
  assert.equal(io.stderr, "");
});

for (const args of [["--no-autotune", "device", "--json"], ["device", "--json", "--no-autotune"]]) {
  Deno.test(`--no-autotune sets SSD_NO_AUTOTUNE (ssd ${args.join(" ")})`, async () => {
    Deno.env.delete("SSD_NO_AUTOTUNE");
    const log = console.log;
    console.log = () => {}; // device prints its report; only the flag matters here
    try {
      assert.equal(await runCli(buildProgram(), args, capture()), EXIT_OK);
    } finally {
      console.log = log;
    }
    assert.equal(Deno.env.get("SSD_NO_AUTOTUNE"), "1");
    Deno.env.delete("SSD_NO_AUTOTUNE");
  });
}

Deno.test("autotune stays on without --no-autotune", async () => {
  Deno.env.delete("SSD_NO_AUTOTUNE");
  const log = console.log;
  console.log = () => {};
  try {
    assert.equal(await runCli(buildProgram(), ["device"], capture()), EXIT_OK);
  } finally {
    console.log = log;
  }
  assert.equal(Deno.env.get("SSD_NO_AUTOTUNE"), undefined);
});
