/**
 * A training run's folder: which checkpoint continues the run, the lock
 * that keeps two trainings out of one folder, and the clean-up of what a
 * killed run leaves behind. A checkpoint is chosen by what it holds (the
 * step and the run identity in its `ssd.train`), not by its file name, so
 * a folder that two runs wrote into never resumes the wrong one. Every
 * file-system failure here ends in one line naming the path and the cause.
 */
import { join } from "node:path";
import { isCheckpointTemp, META_TRAIN, metaJson, readHeader } from "../../core/checkpoint.ts";
import { ConfigError, SsdError } from "../../core/errors.ts";

/** File name of the lock a running training holds in its folder (the process id inside). */
export const LOCK_FILE = ".ssd-train.lock";
/** File name of the checkpoint written at the end of a run. */
export const FINAL_CHECKPOINT = "final.safetensors";

/** File name of the checkpoint taken after `step` steps. */
export function stepCheckpoint(step: number): string {
  return `ckpt-${step}.safetensors`;
}

const CHECKPOINT_NAME = /^(ckpt-\d+|final)\.safetensors$/;

/** The first part of a Deno file-system error ("No space left on device (os error 28)"). */
function causeOf(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split(": ")[0];
}

/**
 * Runs `fn`, turning a file-system error into one `SsdError` line:
 * "Cannot <what> <path>: <cause>". Errors of the toolchain pass through.
 */
export async function onDisk<T>(path: string, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof SsdError) throw e;
    throw new SsdError(`Cannot ${what} ${path}: ${causeOf(e)}`);
  }
}

/** A checkpoint of a run folder, described by its `ssd.train`. */
export interface RunCheckpoint {
  /** The file. */
  path: string;
  /** Steps done when it was saved. */
  step: number;
  /** The run that wrote it (null for checkpoints saved before runs had one). */
  run_id: string | null;
  /** Whether it is a run's end-of-run checkpoint. */
  final: boolean;
  /** When it was written (ms since the epoch). */
  mtime: number;
  /** Its `ssd.train` metadata, null when it has none. */
  train: Record<string, unknown> | null;
}

/** Describes one checkpoint file (its header only is read). */
export async function describeCheckpoint(path: string): Promise<RunCheckpoint> {
  const train = metaJson(await readHeader(path), META_TRAIN);
  const mtime = (await onDisk(path, "read", () => Deno.stat(path))).mtime?.getTime() ?? 0;
  return {
    path,
    step: typeof train?.step === "number" ? train.step : -1,
    run_id: typeof train?.run_id === "string" ? train.run_id : null,
    final: path.endsWith(FINAL_CHECKPOINT),
    mtime,
    train,
  };
}

async function folderNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  await onDisk(dir, "read", async () => {
    for await (const e of Deno.readDir(dir)) if (e.isFile) names.push(e.name);
  });
  return names.sort();
}

/** Every `ckpt-N` and `final` checkpoint of a folder. */
export async function runCheckpoints(dir: string): Promise<RunCheckpoint[]> {
  const names = (await folderNames(dir)).filter((n) => CHECKPOINT_NAME.test(n));
  return await Promise.all(names.map((n) => describeCheckpoint(join(dir, n))));
}

/**
 * The checkpoint a folder's run continues from: among the checkpoints of
 * the run that wrote last (by run identity), the one with the most steps
 * (the final one on a tie). Null when the folder holds none.
 */
export async function newestRunCheckpoint(dir: string): Promise<RunCheckpoint | null> {
  const all = await runCheckpoints(dir);
  if (all.length === 0) return null;
  const latest = all.reduce((a, b) => (b.mtime > a.mtime ? b : a));
  const run = all.filter((c) => c.run_id === latest.run_id);
  return run.reduce((a, b) => (b.step > a.step || (b.step === a.step && b.final) ? b : a));
}

/** The checkpoint `--resume PATH` names: the file, or the newest of the folder's run. */
export async function resumeCheckpoint(path: string): Promise<RunCheckpoint> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    throw new ConfigError(`Cannot resume from ${path}: no such file or folder`);
  }
  if (info.isFile) return await describeCheckpoint(path);
  const best = await newestRunCheckpoint(path);
  if (!best) throw new ConfigError(`Cannot resume from ${path}: the folder holds no checkpoint`);
  return best;
}

/** Files of a training run in a folder (checkpoints, metrics, temporaries of killed saves). */
async function runFiles(dir: string, metricsFile: string): Promise<string[]> {
  return (await folderNames(dir)).filter((n) =>
    CHECKPOINT_NAME.test(n) || n === metricsFile || isCheckpointTemp(n)
  );
}

/**
 * The files of a run already in `dir` (checkpoints, metrics; temporaries
 * of killed saves do not count): what a new run there would replace. None
 * when `dir` does not exist.
 */
export async function earlierRunFiles(dir: string, metricsFile: string): Promise<string[]> {
  try {
    await Deno.stat(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return (await runFiles(dir, metricsFile)).filter((n) => !isCheckpointTemp(n));
}

/** Whether `pid` names a live process (a lock of a dead one is stale). */
function processAlive(pid: number): boolean {
  if (pid === Deno.pid) return true;
  if (Deno.build.os === "linux") {
    try {
      Deno.statSync(`/proc/${pid}`);
      return true;
    } catch {
      return false;
    }
  }
  try {
    return new Deno.Command("kill", { args: ["-0", String(pid)], stderr: "null" }).outputSync()
      .success;
  } catch {
    return true;
  }
}

/** The lock of a folder held by this process; `release()` removes it. */
export interface FolderLock {
  /** Removes the lock file. */
  release(): void;
}

/**
 * Takes `dir`'s training lock: a file holding this process's id. A lock of
 * a live process refuses the run; one left by a killed process is replaced.
 */
export async function lockFolder(dir: string): Promise<FolderLock> {
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await Deno.writeTextFile(path, `${Deno.pid}\n`, { createNew: true });
      return { release: () => Deno.removeSync(path) };
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) {
        return onDisk(path, "write", () => Promise.reject(e));
      }
    }
    const pid = Number((await Deno.readTextFile(path).catch(() => "")).trim());
    if (Number.isSafeInteger(pid) && pid > 0 && processAlive(pid)) {
      throw new ConfigError(
        `Folder ${dir} is in use by another training (process ${pid}): ` +
          `wait for it, or give another --out`,
      );
    }
    await onDisk(path, "remove the stale lock", () => Deno.remove(path));
  }
  throw new ConfigError(`Cannot lock ${dir}: another training took it at the same time`);
}

/**
 * Prepares a locked folder for a run: removes the temporaries of killed
 * saves; for a new run (`resuming` false), refuses a folder that holds
 * another run's files unless `force`, which removes them first.
 */
export async function prepareFolder(
  dir: string,
  opts: { resuming: boolean; force: boolean; metricsFile: string },
): Promise<void> {
  const files = await runFiles(dir, opts.metricsFile);
  const temps = files.filter(isCheckpointTemp);
  const run = files.filter((n) => !isCheckpointTemp(n));
  if (!opts.resuming && run.length > 0 && !opts.force) {
    const shown = run.length > 3 ? [...run.slice(0, 3), "..."] : run;
    // A run stopped before its first checkpoint leaves metrics that cannot be resumed.
    const resumable = run.some((n) => CHECKPOINT_NAME.test(n));
    throw new ConfigError(
      `Folder ${dir} holds another run (${shown.join(", ")}): ` +
        (resumable
          ? `--resume ${dir} to continue it, --force to replace it`
          : `it saved no checkpoint to resume; --force to replace it`),
    );
  }
  const doomed = opts.resuming ? temps : files;
  for (const n of doomed) {
    await onDisk(join(dir, n), "remove", () => Deno.remove(join(dir, n)));
  }
}

/**
 * Opens `dir` for a run: creates it if needed, takes its lock and prepares
 * it (see `prepareFolder`). `release()` drops the lock, and removes the
 * folder again when this run created it and left nothing in it.
 */
export async function openRunFolder(
  dir: string,
  opts: { resuming: boolean; force: boolean; metricsFile: string },
): Promise<FolderLock> {
  let created = false;
  try {
    await Deno.stat(dir);
  } catch {
    await onDisk(dir, "create", () => Deno.mkdir(dir, { recursive: true }));
    created = true;
  }
  const lock = await lockFolder(dir);
  const release = () => {
    lock.release();
    if (created && [...Deno.readDirSync(dir)].length === 0) Deno.removeSync(dir);
  };
  try {
    await prepareFolder(dir, opts);
  } catch (e) {
    release();
    throw e;
  }
  return { release };
}
