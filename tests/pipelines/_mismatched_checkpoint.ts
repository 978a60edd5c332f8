/**
 * A checkpoint whose tensors do not fit its own stored config, for the inspect tests:
 * one tensor missing, one of the wrong shape, one that no model has.
 */
import { readCheckpoint, writeCheckpoint } from "../../core/checkpoint.ts";

/** What `configMismatches` says about the file `writeMismatched` makes, in its order. */
export const MISMATCHES: readonly string[] = Object.freeze([
  'tensor "transformer.h.0.mlp.c_fc.weight" has shape [16, 16], expected [32, 16]',
  'tensor "transformer.ln_f.bias" is missing (expected F32 [16])',
  'unexpected tensor "lm_head.weight" [256, 16] (not in the model)',
]);

/** Copies the tiny checkpoint `src` (TINY_CONFIG) to `dst` with the three mismatches. */
export async function writeMismatched(src: string, dst: string): Promise<void> {
  const ck = await readCheckpoint(src, { filter: (n) => !n.startsWith("optim.") });
  const t = ck.tensors;
  t.set("transformer.h.0.mlp.c_fc.weight", {
    dtype: "F32",
    shape: [16, 16],
    data: new Float32Array(256),
  });
  t.delete("transformer.ln_f.bias");
  t.set("lm_head.weight", { ...t.get("transformer.wte.weight")! });
  await writeCheckpoint(dst, { tensors: t, metadata: ck.metadata });
}
