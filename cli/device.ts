/**
 * `ssd device`: prints the WebGPU adapter (name, vendor, backend, whether it
 * is a software fallback, limits, features) and the Deno version, as tables
 * or, with `--json`, as one JSON document on stdout.
 */
import { Command } from "commander";
import { type DeviceReport, runDevice } from "../pipelines/device.ts";

/** Limits measured in bytes, printed with a binary unit beside the raw value. */
const BYTE_LIMITS = new Set([
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxUniformBufferBindingSize",
  "maxComputeWorkgroupStorageSize",
]);

/** PCI (and Khronos) vendor ids, since most adapters report the vendor as a number. */
const VENDOR_IDS: Record<number, string> = {
  0x1002: "AMD",
  0x10de: "NVIDIA",
  0x8086: "Intel",
  0x106b: "Apple",
  0x13b5: "Arm",
  0x5143: "Qualcomm",
  0x10005: "Mesa",
};

/** `"65541"` → `"65541 (0x10005, Mesa)"`; names pass through. */
function fmtVendor(vendor: string): string {
  if (vendor === "") return "-";
  if (!/^\d+$/.test(vendor)) return vendor;
  const id = Number(vendor);
  const name = VENDOR_IDS[id];
  return `${vendor} (0x${id.toString(16)}${name ? `, ${name}` : ""})`;
}

/** Options of `ssd device`, as commander parses them. */
export interface DeviceFlags {
  /** Print one JSON document instead of tables. */
  json?: boolean;
}

/** Builds the `device` subcommand. */
export function deviceCommand(): Command {
  return new Command("device")
    .description("show the WebGPU adapter this machine offers: name, backend, limits, features")
    .option("--json", "print one JSON document on stdout instead of tables")
    .action(async (flags: DeviceFlags) => {
      const report = await runDevice();
      console.log(flags.json ? JSON.stringify(report, null, 2) : formatDevice(report));
    });
}

/** `1073741824` → `"1 GiB"`; exact multiples only get the short form. */
function fmtBytes(n: number): string {
  for (const [unit, size] of [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]] as const) {
    if (n >= size) {
      const v = n / size;
      return `${Number.isInteger(v) ? v : v.toFixed(1)} ${unit}`;
    }
  }
  return `${n} B`;
}

/** Two left-aligned columns. */
function table(rows: [string, string][]): string {
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join("\n");
}

/** The human-readable form of `ssd device`. */
export function formatDevice(r: DeviceReport): string {
  const adapter = table([
    ["name", r.name],
    ["vendor", fmtVendor(r.vendor)],
    ["architecture", r.architecture || "-"],
    ["backend", r.backend],
    ["fallback", r.fallback ? "yes (software adapter)" : "no"],
    ["deno", `${r.deno.version} (v8 ${r.deno.v8}, typescript ${r.deno.typescript})`],
  ]);
  const limits = table(
    Object.keys(r.limits).sort().map((k) => {
      const v = r.limits[k];
      return [k, BYTE_LIMITS.has(k) ? `${v} (${fmtBytes(v)})` : String(v)];
    }),
  );
  const features = r.features.length ? r.features.map((f) => `  ${f}`).join("\n") : "  (none)";
  return `Adapter\n${adapter}\n\nLimits\n${limits}\n\nFeatures\n${features}`;
}
