/**
 * @module
 * Short distinct labels for the paths of `ssd report`'s inputs.
 */

/** Shortest trailing path parts that tell the paths apart (`a/run`, `b/run`). */
export function uniqueNames(paths: string[], stripExt = ""): string[] {
  const parts = paths.map((p) => p.replace(stripExt, "").split(/[\\/]/).filter((s) => s !== ""));
  const depth = parts.map(() => 1);
  for (let round = 0; round < 8; round++) {
    const names = parts.map((p, i) => p.slice(-depth[i]).join("/"));
    let clash = false;
    names.forEach((n, i) => {
      if (names.indexOf(n) !== i || names.lastIndexOf(n) !== i) {
        depth[i]++;
        clash = true;
      }
    });
    if (!clash) return names;
  }
  return parts.map((p, i) => `${p.slice(-depth[i]).join("/")} #${i + 1}`);
}
