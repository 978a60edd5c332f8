/**
 * The check of a checkpoint's training state (`ssd.train`), as strict as the header's:
 * a resumed run trusts these numbers (the step to continue from, the data order, the LR
 * schedule), so an edited or damaged value must be refused with one line before it
 * steers a run, not surface as a wrong loss curve later.
 *
 * Every key `ssd train` writes is known here with its type and range; any key is
 * optional (weights-only tools save a part, tests save a few), but an unknown key or a
 * value of the wrong type or range is refused. The states of the schedule, the FLOP
 * accounting and the partition monitor are checked inside by their owners on resume;
 * here they only need to be objects.
 */
import { CheckpointError } from "./errors.ts";
import { describe, json, q } from "./_checkpoint_util.ts";

/** A value's problem, phrased to follow its key ("is -1, not ..."), or null when fine. */
type Check = (v: unknown) => string | null;

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v);

/** A check from a predicate and what the value should have been. */
const must = (ok: (v: unknown) => boolean, want: string): Check => (v) =>
  ok(v) ? null : `is ${json(v)}, not ${want}`;

const count = must((v) => Number.isSafeInteger(v) && (v as number) >= 0, "an integer >= 0");
const positive = must((v) => Number.isSafeInteger(v) && (v as number) >= 1, "an integer >= 1");
const nonNegative = must(
  (v) => typeof v === "number" && Number.isFinite(v) && v >= 0,
  "a finite number >= 0",
);
const text = must((v) => typeof v === "string", "a string");
const object = must(isObject, "an object");
const rngState = must(
  (v) =>
    Array.isArray(v) && v.length === 4 &&
    v.every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32),
  "four 32-bit words",
);

/** Checks the named fields of an object with `checks`; the first problem, or null. */
function fields(checks: Record<string, Check>, required: boolean): Check {
  return (v) => {
    if (!isObject(v)) return `is ${json(v)}, not an object`;
    for (const [k, check] of Object.entries(checks)) {
      if (!Object.hasOwn(v, k)) {
        if (required) return `has no ${q(k)}`;
        continue;
      }
      const bad = check(v[k]);
      if (bad) return `field ${q(k)} ${bad}`;
    }
    return null;
  };
}

/** The keys `ssd train` saves, each with its check. */
const TRAIN_STATE_KEYS: Readonly<Record<string, Check>> = Object.freeze({
  run_id: must((v) => typeof v === "string" && v.length > 0, "a run id string"),
  step: count,
  tokens_seen: count,
  phase: must((v) => v === "dense" || v === "sparse", '"dense" or "sparse"'),
  phase_history: must((v) => Array.isArray(v) && v.every(isObject), "an array of switch events"),
  schedule: object,
  accounting: object,
  monitor: object,
  sampler: fields(
    { rng: rngState, draws: count, tokens: count, batch: positive, ctx: positive },
    true,
  ),
  lr_schedule: fields(
    { maxLr: nonNegative, minLr: nonNegative, warmup: count, total: count },
    true,
  ),
  optimizer_step: count,
  tokenizer: text,
  data_source: text,
  config: fields({ steps: count }, false),
});

/**
 * Validates a checkpoint's training state (the parsed `ssd.train` object): known keys
 * only, each of its type and range, and a step within the run's steps.
 *
 * @param state the parsed `ssd.train` JSON
 * @param path the checkpoint, for the message
 * @throws CheckpointError naming the first bad key and its value
 */
export function validateTrainState(state: unknown, path: string): void {
  const fail = (what: string) =>
    new CheckpointError(
      `Checkpoint ${path} has a corrupt training state: ${what}: use an earlier ` +
        `checkpoint, or start a new run instead of resuming`,
    );
  if (!isObject(state)) throw fail(`"ssd.train" is ${describe(state)}, not an object`);
  for (const [key, value] of Object.entries(state)) {
    const check = Object.hasOwn(TRAIN_STATE_KEYS, key) ? TRAIN_STATE_KEYS[key] : null;
    if (!check) throw fail(`unknown key ${q(key)}`);
    const bad = check(value);
    if (bad) throw fail(`${q(key)} ${bad}`);
  }
  const steps = isObject(state.config) ? state.config.steps : undefined;
  if (typeof state.step === "number" && typeof steps === "number" && state.step > steps) {
    throw fail(`step ${state.step} is beyond the run's ${steps} steps`);
  }
}
