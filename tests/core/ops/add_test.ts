import { add, mul, scale, sub } from "../../../core/ops/add.ts";
import { checkOp, setupGpu } from "../../_helpers.ts";

await setupGpu();

const SHAPES: [number[], number[]][] = [
  [[7, 13], [7, 13]],
  [[1], [1]],
  [[33, 65], [65]],
  [[2, 3, 5], [3, 5]],
  [[4, 8], [8]],
];

function bcast(f: (x: number, y: number) => number) {
  return (a: Float64Array, b: Float64Array) => a.map((x, i) => f(x, b[i % b.length]));
}

for (const [sa, sb] of SHAPES) {
  Deno.test(`add() matches reference and finite differences for ${sa} + ${sb}`, async () => {
    await checkOp({
      inputs: [{ shape: sa }, { shape: sb }],
      gpu: add,
      ref: bcast((x, y) => x + y),
    });
  });
  Deno.test(`mul() matches reference and finite differences for ${sa} * ${sb}`, async () => {
    await checkOp({
      inputs: [{ shape: sa }, { shape: sb }],
      gpu: mul,
      ref: bcast((x, y) => x * y),
    });
  });
  Deno.test(`sub() matches reference for ${sa} - ${sb} and the swapped order`, async () => {
    await checkOp({
      inputs: [{ shape: sa }, { shape: sb }],
      gpu: sub,
      ref: bcast((x, y) => x - y),
    });
    await checkOp({
      inputs: [{ shape: sb }, { shape: sa }],
      gpu: sub,
      ref: (b, a) => a.map((x, i) => b[i % b.length] - x),
    });
  });
}

Deno.test("add() broadcasts the smaller operand given first", async () => {
  await checkOp({
    inputs: [{ shape: [5] }, { shape: [3, 5] }],
    gpu: add,
    ref: (b, a) => a.map((x, i) => x + b[i % 5]),
  });
});

Deno.test("scale() matches reference and finite differences", async () => {
  await checkOp({
    inputs: [{ shape: [33, 17] }],
    gpu: (a) => scale(a, -2.5),
    ref: (a) => a.map((x) => -2.5 * x),
  });
});
