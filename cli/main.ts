/**
 * The `ssd` command line: `deno task ssd <subcommand> [flags]` from a
 * checkout, or the compiled `ssd` binary. Each subcommand lives in its own
 * `cli/<cmd>.ts`, which parses flags and calls `run<Cmd>()` from
 * `pipelines/<cmd>.ts`; this file only assembles them and sets the global
 * flags. Exit codes and error lines are the job of `cli/_run.ts`.
 */
import { Command } from "commander";
import denoJson from "../deno.json" with { type: "json" };
import { processIo, reportError, runCli } from "./_run.ts";
import { benchCommand } from "./bench.ts";
import { demoCommand } from "./demo.ts";
import { deviceCommand } from "./device.ts";
import { evalCommand } from "./eval.ts";
import { exportCommand } from "./export.ts";
import { generateCommand } from "./generate.ts";
import { inspectCommand } from "./inspect.ts";
import { moefyCommand } from "./moefy.ts";
import { profileCommand } from "./profile.ts";
import { reportCommand } from "./report.ts";
import { trainCommand } from "./train.ts";

/** Global flags, accepted before or after the subcommand. */
export interface GlobalFlags {
  /** False with `--no-autotune`: kernels use their default tile sizes. */
  autotune: boolean;
}

/** Turns kernel autotuning off for this process (read by the GPU layer). */
function disableAutotune(): void {
  Deno.env.set("SSD_NO_AUTOTUNE", "1");
}

/** Builds the program with every subcommand; `runCli` runs it. */
export function buildProgram(): Command {
  const program = new Command("ssd")
    .description(
      "Switchable Sparse-Dense learning on WebGPU: train, profile, MoE-fy and benchmark " +
        "GPT models whose FFNs switch between dense and mixture-of-experts",
    )
    .version(denoJson.version, "-V, --version", "print the ssd version")
    .option("--no-autotune", "use default kernel tile sizes instead of tuning them per device")
    .helpCommand("help [command]", "show help for a command")
    .hook("preAction", (thisCommand) => {
      const flags = thisCommand.opts<GlobalFlags>();
      if (!flags.autotune) disableAutotune();
    });
  program.addCommand(benchCommand());
  program.addCommand(demoCommand());
  program.addCommand(deviceCommand());
  program.addCommand(evalCommand());
  program.addCommand(exportCommand());
  program.addCommand(generateCommand());
  program.addCommand(inspectCommand());
  program.addCommand(moefyCommand());
  program.addCommand(profileCommand());
  program.addCommand(reportCommand());
  program.addCommand(trainCommand());
  return program;
}

if (import.meta.main) {
  const io = processIo();
  // Errors that escape every await (a rejected promise nobody awaited, a
  // throw in a timer) get the same one-line treatment as the rest.
  const fatal = (reason: unknown) => Deno.exit(reportError(reason, io));
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    fatal(e.reason);
  });
  globalThis.addEventListener("error", (e) => {
    e.preventDefault();
    fatal(e.error);
  });
  Deno.exit(await runCli(buildProgram(), Deno.args, io));
}
