/**
 * `ssd inspect`: what a checkpoint holds, from its header alone (no tensor
 * data is read, so it is instant on any size): file and format, model config
 * and parameter count, every tensor with dtype and shape, the optimizer
 * moments (summarised), the training state and the MoE layout.
 *
 * Plain safetensors files from other tools are accepted (`allowForeign`):
 * they are shown with whatever they hold, and null where ssd metadata is
 * missing. A corrupt or truncated file is still rejected by the header
 * validation of core/checkpoint.ts. A file whose tensors do not fit its own
 * config is listed all the same, with the mismatches, since inspect is where
 * a user looks to find out why the other commands refuse it.
 */
import {
  configMismatches,
  DTYPE_BYTES,
  META_CONFIG,
  META_FORMAT,
  META_MOE,
  META_TRAIN,
  metaJson,
  parseOptimName,
  readHeader,
  type SafeDType,
} from "../core/checkpoint.ts";
import { type GPTConfig, paramCount, paramShapes, validateConfig } from "../core/nn/config.ts";
import { SsdError } from "../core/errors.ts";

/** What `ssd inspect` shows. */
export interface InspectConfig {
  /** The .safetensors file. */
  checkpoint: string;
  /** List every optimizer-moment tensor instead of a summary. */
  all: boolean;
}

/** Defaults of every `InspectConfig` field but the checkpoint. */
export const DEFAULT_INSPECT_CONFIG: Readonly<Omit<InspectConfig, "checkpoint">> = Object.freeze({
  all: false,
});

/** One tensor of the header. */
export interface TensorSummary {
  /** Name in the file. */
  name: string;
  /** safetensors dtype. */
  dtype: SafeDType;
  /** Dims, outermost first. */
  shape: number[];
  /** Number of elements. */
  numel: number;
  /** Bytes of data. */
  bytes: number;
}

/** The optimizer moments (`optim.m.*`, `optim.v.*`), summarised. */
export interface OptimizerSummary {
  /** Number of moment tensors (two per parameter when complete). */
  count: number;
  /** Their total element count. */
  numel: number;
  /** Their total bytes. */
  bytes: number;
  /** Every moment tensor, only when asked for (`--all`). */
  tensors?: TensorSummary[];
}

/** The training state, the fields people look at first. */
export interface TrainStateSummary {
  /** Optimizer steps taken. */
  step: number | null;
  /** Tokens trained on. */
  tokens_seen: number | null;
  /** Schedule phase at save time ("dense" / "sparse"). */
  phase: string | null;
  /** Phase switches so far, oldest first. */
  phase_history: unknown[];
  /** Where the training data came from. */
  data_source: string | null;
  /** Tokenizer id. */
  tokenizer: string | null;
  /** The whole `ssd.train` object as saved (sampler, RNG, LR state, ...). */
  raw: Record<string, unknown>;
}

/** The MoE layout (`ssd.moe`). */
export interface MoeSummary {
  /** Experts per FFN layer. */
  experts: number | null;
  /** Experts each token uses by default. */
  top_k: number | null;
  /** How routers are built (e.g. "centroid"). */
  router: string | null;
  /** Layers that store a router tensor (`...mlp.router.weight`). */
  router_layers: number[];
  /** Neurons per expert, d_ff / experts, when both are known. */
  expert_size: number | null;
}

/** Everything `ssd inspect` reports (`--json` prints exactly this). */
export interface InspectReport {
  /** The file inspected. */
  path: string;
  /** File size in bytes. */
  file_bytes: number;
  /** Header size in bytes (JSON and padding, without the 8-byte length). */
  header_bytes: number;
  /** Tensor data bytes. */
  data_bytes: number;
  /** "safetensors"; `ssd_format` says whether ssd wrote it. */
  format: string;
  /** `ssd.format` version; null for a plain safetensors file. */
  ssd_format: string | null;
  /** Model config (`ssd.config`); null when absent. */
  config: Record<string, unknown> | null;
  /** Why the config is not a valid GPT config, or null when it is (or is absent). */
  config_error: string | null;
  /**
   * Where the tensors differ from what the config (and MoE layout) expects: missing,
   * wrong shape or dtype, unexpected; empty when they match or there is no valid config.
   */
  mismatches: string[];
  /** Parameters by the config (tied lm_head once); null without a valid config. */
  parameters: number | null;
  /** Elements of all tensors that are not optimizer moments. */
  tensor_parameters: number;
  /** Model tensors (everything but optimizer moments), in name order. */
  tensors: TensorSummary[];
  /** Optimizer moments, summarised. */
  optimizer: OptimizerSummary;
  /** Training state; null when the file has none. */
  train: TrainStateSummary | null;
  /** MoE layout; null for a dense checkpoint. */
  moe: MoeSummary | null;
  /** `__metadata__` entries other than the ssd ones, as stored. */
  other_metadata: Record<string, string>;
}

const SSD_KEYS = new Set([META_FORMAT, META_CONFIG, META_MOE, META_TRAIN]);
const ROUTER_RE = /^transformer\.h\.(\d+)\.mlp\.router\.weight$/;

function num(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

function str(v: unknown): string | null {
  return typeof v === "string" ? v : null;
}

function summariseTrain(t: Record<string, unknown>): TrainStateSummary {
  return {
    step: num(t.step),
    tokens_seen: num(t.tokens_seen),
    phase: str(t.phase),
    phase_history: Array.isArray(t.phase_history) ? t.phase_history : [],
    data_source: str(t.data_source),
    tokenizer: str(t.tokenizer),
    raw: t,
  };
}

function summariseMoe(
  m: Record<string, unknown>,
  config: GPTConfig | null,
  routerLayers: number[],
): MoeSummary {
  const experts = num(m.experts);
  const router = m.router ?? m.router_kind;
  const kind = typeof router === "string"
    ? router
    : router && typeof router === "object"
    ? str((router as Record<string, unknown>).kind)
    : null;
  return {
    experts,
    top_k: num(m.top_k),
    router: kind,
    router_layers: routerLayers,
    expert_size: experts && config && config.d_ff % experts === 0 ? config.d_ff / experts : null,
  };
}

/** Experts of the MoE layout when it is a usable count, for the router shapes. */
function routerExperts(moe: Record<string, unknown> | null): number | undefined {
  const e = moe?.experts;
  return Number.isSafeInteger(e) && (e as number) >= 1 ? (e as number) : undefined;
}

/**
 * Reads a checkpoint's header and summarises it.
 *
 * @throws CheckpointError when the file is missing, not safetensors, truncated or corrupt
 */
export async function runInspect(config: InspectConfig): Promise<InspectReport> {
  const header = await readHeader(config.checkpoint, { allowForeign: true });
  const rawConfig = metaJson(header, META_CONFIG);
  let gpt: GPTConfig | null = null;
  let configError: string | null = null;
  if (rawConfig) {
    try {
      gpt = validateConfig(rawConfig as unknown as GPTConfig);
    } catch (e) {
      if (!(e instanceof SsdError)) throw e;
      configError = e.message;
    }
  }

  const tensors: TensorSummary[] = [];
  const moments: TensorSummary[] = [];
  const routerLayers: number[] = [];
  for (const [name, info] of header.tensors) {
    const numel = info.shape.reduce((a, b) => a * b, 1);
    const t = {
      name,
      dtype: info.dtype,
      shape: [...info.shape],
      numel,
      bytes: numel * DTYPE_BYTES[info.dtype],
    };
    (parseOptimName(name) ? moments : tensors).push(t);
    const r = ROUTER_RE.exec(name);
    if (r) routerLayers.push(Number(r[1]));
  }
  routerLayers.sort((a, b) => a - b);

  const train = metaJson(header, META_TRAIN);
  const moe = metaJson(header, META_MOE);
  const other: Record<string, string> = {};
  for (const [k, v] of Object.entries(header.metadata)) if (!SSD_KEYS.has(k)) other[k] = v;

  const optimizer: OptimizerSummary = {
    count: moments.length,
    numel: moments.reduce((a, t) => a + t.numel, 0),
    bytes: moments.reduce((a, t) => a + t.bytes, 0),
  };
  if (config.all) optimizer.tensors = moments;

  return {
    path: config.checkpoint,
    file_bytes: header.fileBytes,
    header_bytes: header.headerBytes,
    data_bytes: header.fileBytes - header.dataStart,
    format: "safetensors",
    ssd_format: header.metadata[META_FORMAT] ?? null,
    config: rawConfig,
    config_error: configError,
    mismatches: gpt ? configMismatches(header, paramShapes(gpt, routerExperts(moe))) : [],
    parameters: gpt ? paramCount(gpt) : null,
    tensor_parameters: tensors.reduce((a, t) => a + t.numel, 0),
    tensors,
    optimizer,
    train: train ? summariseTrain(train) : null,
    moe: moe ? summariseMoe(moe, gpt, routerLayers) : null,
    other_metadata: other,
  };
}
