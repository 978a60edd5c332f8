/**
 * WGSL pieces every kernel shares, written once: the binding block of the
 * convention in `kernel.ts` (read-only storage, then read-write storage in
 * group 0; the params uniform `p` in group 1), and the entry point of a
 * flat launch, whose invocation id is rebuilt from the 2-D grid that
 * `grid1d` spreads a long 1-D launch over.
 */

/** Element type of a kernel's scalar and vec4 variants (generated from one template). */
export type Lane = "f32" | "vec4f";

/** Horizontal sum of a `Lane` value `v`, as a WGSL expression. */
export function hsum(lane: Lane, v = "v"): string {
  return lane === "f32" ? v : `${v}.x + ${v}.y + ${v}.z + ${v}.w`;
}

/**
 * The binding block, from a table of bindings by kind:
 *
 *     params n: u32, c: u32                  fields of the uniform struct P
 *     read   x: array<f32>, w: array<f32>    read-only storage
 *     write  y: array<f32>                   read-write storage
 *
 * (each kind may take several lines, a line several bindings).
 *
 * Storage bindings are numbered in order in group 0, and every `read` must
 * come before the first `write` (inputs, then outputs); with params, the
 * uniform `p: P` is group 1 binding 0. A tag: bindings`...` (so that the
 * table reads as part of the kernel's WGSL).
 */
export function bindings(strings: TemplateStringsArray, ...values: unknown[]): string {
  const table = strings.reduce((acc, s, i) => acc + String(values[i - 1]) + s);
  const params: string[] = [];
  const storage: string[] = [];
  let writing = false;
  for (const line of table.split("\n").map((l) => l.trim()).filter((l) => l)) {
    const [kind, decl] = [line.slice(0, line.indexOf(" ")), line.slice(line.indexOf(" ")).trim()];
    if (kind === "params") params.push(decl.replace(/,$/, ""));
    else if (kind === "read" && !writing) {
      for (const d of decls(decl)) storage.push(`var<storage, read> ${d};`);
    } else if (kind === "write") {
      writing = true;
      for (const d of decls(decl)) storage.push(`var<storage, read_write> ${d};`);
    } else throw new Error(`bindings(): bad line "${line}" (a read after a write?)`);
  }
  const out = storage.map((decl, i) => `@group(0) @binding(${i}) ${decl}`);
  if (params.length === 0) return out.join("\n");
  return [`struct P { ${params.join(", ")} }`, ...out, "@group(1) @binding(0) var<uniform> p: P;"]
    .join("\n");
}

// The `name: type` entries of one table line (types may hold commas: `array<f32, 4>`).
function decls(line: string): string[] {
  return line.split(/,\s*(?=[A-Za-z_]\w*\s*:)/).map((d) => d.trim());
}

/**
 * The flat invocation id of a launch of `wg`-thread workgroups on grid1d's
 * (nx, ny) grid: y·nx·wg + x, with `gid` the global invocation id and `nwg`
 * the workgroup counts (the builtins of `flatEntry`'s main).
 */
export function flatId(wg: number): string {
  return `gid.y * nwg.x * ${wg}u + gid.x`;
}

/**
 * Opens the entry point `main` of a flat launch: invocation `id` (the flat
 * id above) returns at once past `bound` (the rest of the last workgroup).
 * The kernel's body and the closing brace follow it.
 */
export function flatEntry(
  wg: number,
  { id = "i", bound = "p.n" }: { id?: string; bound?: string } = {},
): string {
  return `@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let ${id} = ${flatId(wg)};
  if (${id} >= ${bound}) { return; }`;
}
