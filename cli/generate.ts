/**
 * `ssd generate CKPT --prompt TEXT`: samples text from a checkpoint and
 * streams it to stdout as it is produced, the prompt first (unless
 * `--no-echo`). Bytes are decoded with `ByteDecoder`, so a multi-byte UTF-8
 * character is written whole even when its bytes come from different steps.
 * Nothing is written until the checkpoint has loaded and the first step has
 * run, so a failing run leaves stdout empty.
 */
import { Command, InvalidArgumentError } from "commander";
import { ByteDecoder } from "../core/tokenizer.ts";
import { DEFAULT_GENERATE_CONFIG, runGenerate } from "../pipelines/generate.ts";
import { expertFlags, intArg, intAtLeast, numArg } from "./_flags.ts";

/** Options of `ssd generate`, as commander parses them. */
export interface GenerateFlags {
  /** Text to continue. */
  prompt: string;
  /** Tokens to generate. */
  tokens: number;
  /** Softmax temperature; 0 = greedy. */
  temperature: number;
  /** Top-k cut; 0 = all. */
  sampleTopK: number;
  /** Experts per token (MoE checkpoints). */
  topK?: number;
  /** All experts of an MoE checkpoint. */
  dense?: boolean;
  /** RNG seed. */
  seed: number;
  /** False with `--no-echo`: the prompt is not printed. */
  echo: boolean;
}

function temperatureArg(value: string): number {
  const n = numArg(value);
  if (n < 0) {
    throw new InvalidArgumentError(`expected a number >= 0 (0 = greedy), got "${value}"`);
  }
  return n;
}

const encoder = new TextEncoder();

/** Writes `text` to stdout; false once the reader has gone (`ssd generate ... | head`). */
async function writeAll(text: string): Promise<boolean> {
  let bytes = encoder.encode(text);
  try {
    while (bytes.length > 0) bytes = bytes.subarray(await Deno.stdout.write(bytes));
  } catch (e) {
    if (e instanceof Deno.errors.BrokenPipe) return false;
    throw e;
  }
  return true;
}

/** Builds the `generate` subcommand. */
export function generateCommand(): Command {
  const d = DEFAULT_GENERATE_CONFIG;
  const cmd = new Command("generate")
    .description(
      "sample text from a checkpoint, streamed to stdout as it is produced " +
        "(temperature, top-k, seeded: the same seed gives the same text)",
    )
    .argument("<checkpoint>", "checkpoint file (.safetensors) to sample from")
    .requiredOption("--prompt <text>", "text to continue (not empty)")
    .option(
      "--tokens <n>",
      "tokens (bytes) to generate",
      intAtLeast(0, "an integer >= 0"),
      d.tokens,
    )
    .option(
      "--temperature <t>",
      "softmax temperature; 0 = greedy (always the most likely byte)",
      temperatureArg,
      d.temperature,
    )
    .option(
      "--sample-top-k <k>",
      "sample among the k most likely bytes; 0 = all",
      intAtLeast(0, "an integer >= 0 (0 = all)"),
      d.sample_top_k,
    )
    .option("--seed <s>", "random seed", intArg, d.seed);
  return expertFlags(cmd, "run an MoE checkpoint with all experts")
    .option("--no-echo", "do not print the prompt before the generated text")
    .action(async (checkpoint: string, flags: GenerateFlags) => {
      const stream = runGenerate({
        checkpoint,
        prompt: flags.prompt,
        tokens: flags.tokens,
        temperature: flags.temperature,
        sample_top_k: flags.sampleTopK,
        seed: flags.seed,
        top_k: flags.topK ?? null,
        dense: flags.dense ?? false,
      });
      // The first step loads and checks everything; only then does output start.
      let step = await stream.next();
      const dec = new ByteDecoder();
      let last = flags.echo ? flags.prompt : "";
      let open = !flags.echo || await writeAll(flags.prompt);
      while (open && !step.done) {
        const text = dec.push(step.value);
        if (text) {
          open = await writeAll(text);
          last = text;
        }
        step = await stream.next();
      }
      // A closed pipe ends the run quietly; return() releases the model.
      if (!open) {
        await stream.return(undefined);
        return;
      }
      const tail = dec.flush();
      if (tail && !(await writeAll(tail))) return;
      // A terminal gets its prompt back on a fresh line; piped output stays byte-exact.
      if (Deno.stdout.isTerminal() && !(tail || last).endsWith("\n")) await writeAll("\n");
    });
}
