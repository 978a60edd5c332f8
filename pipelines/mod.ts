/**
 * @module
 * The jobs behind the `ssd` subcommands, each returning data (the CLI only
 * parses flags and prints): `runTrain`, `runEval`, `runGenerate`,
 * `runInspect`, `runExport`, `runProfile`, `runMoefy`, `runBench`,
 * `runReport`, `runDemo`, with their configs and reports.
 */
export { runTrain, type TrainHooks, type TrainOptions, type TrainSummary } from "./train/run.ts";
export type { FinalMetrics, MetricsLine, MetricsRecord, StepMetrics } from "./train/metrics.ts";
export {
  DEFAULT_TRAIN_CONFIG,
  type OptimizerConfig,
  resolveTrainConfig,
  type RunConfig,
  type TrainConfig,
} from "./train/config.ts";
export type { AccountingSummary, PhaseTotals } from "./train/accounting.ts";
export type {
  Ending,
  Phase,
  ScheduleConfig,
  ScheduleKind,
  SwitchEvent,
  SwitchReason,
} from "./train/schedule.ts";
export type { MonitorReading, RuleConfig, SwitchRule } from "./train/switch_rule.ts";
export { FAMILIES, type ProfileShares } from "./train/kernel_profile.ts";
export type { FlatConfig } from "./config.ts";

export { type EvalConfig, type EvalHooks, type EvalReport, runEval } from "./eval.ts";
export { type GenerateConfig, runGenerate } from "./generate.ts";
export {
  type InspectConfig,
  type InspectReport,
  type MoeSummary,
  type OptimizerSummary,
  runInspect,
  type TensorSummary,
  type TrainStateSummary,
} from "./inspect.ts";
export {
  EXPORT_FORMATS,
  type ExportConfig,
  type ExportedFile,
  type ExportFormat,
  type ExportReport,
  runExport,
} from "./export.ts";
export {
  type CheckpointProfile,
  type LayerProfile,
  type PairSimilarity,
  type ProfileConfig,
  type ProfileHooks,
  type ProfileReport,
  runProfile,
} from "./profile/run.ts";
export {
  type CoverageRow,
  type MoefyConfig,
  type MoefyHooks,
  type MoefyLayer,
  type MoefyReport,
  runMoefy,
} from "./moefy.ts";
export {
  type BenchConfig,
  type BenchHooks,
  benchJson,
  type BenchReport,
  type BenchRow,
  type DecodeResult,
  type PrefillResult,
  runBench,
} from "./bench/run.ts";
export type { BenchJson } from "./bench/json.ts";
export { type ReportConfig, type ReportResult, runReport } from "./report/run.ts";
export type { SkippedPlot } from "./report/_style.ts";
export { type DemoOptions, type DemoResult, runDemo } from "./demo.ts";
