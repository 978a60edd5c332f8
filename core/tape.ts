/**
 * Reverse-mode autograd tape.
 *
 * Each op whose inputs need gradients records a node: its inputs, its output
 * and a backward rule that maps the output's gradient to its inputs'
 * gradients. `backward(root)` walks the nodes in reverse creation order.
 * Gradients accumulate out of place (`g = g_old + g_new`), so a rule may hand
 * back the incoming gradient itself (as add does) without aliasing trouble.
 *
 * Nodes recorded inside a `tidy` scope are dropped when it closes (their
 * tensors are released then): run backward in the scope of the forward.
 *
 * The project's one style of backward: a closure handed to `record` next to
 * its forward, in the op's own file (as PyTorch's `Function` and llm.c's
 * paired layers keep them), not a rule in a central registry. Long fused
 * ops (the MoE FFN) name their backward as a function beside the forward
 * and hand that to the tape.
 */
import { binaryKernel } from "../gpu/kernels/elementwise.ts";
import { gpu } from "../gpu/runtime.ts";
import { keep, onScopeEnd, scopeDepth } from "./scope.ts";
import { empty, full, type Tensor } from "./tensor.ts";
import { fmtShape, ShapeError } from "./errors.ts";

/**
 * Gradients of an op's inputs from the gradient of its output. `needs[i]`
 * says whether input i wants one; return null where it does not.
 */
export type BackwardRule = (dOut: Tensor, needs: boolean[]) => (Tensor | null)[];

interface Node {
  op: string;
  inputs: Tensor[];
  out: Tensor;
  backward: BackwardRule;
  depth: number;
}

let nodes: Node[] = [];
let gradEnabled = true;

onScopeEnd((depth) => {
  if (nodes.length > 0) nodes = nodes.filter((n) => n.depth < depth);
});

/** Whether ops record nodes now (false inside `noGrad`). */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn with recording off (evaluation, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Number of recorded nodes (tests check the tape is cleared). */
export function tapeSize(): number {
  return nodes.length;
}

/**
 * Records `out = op(inputs)` if any input needs a gradient. Returns `out`
 * with `requiresGrad` set accordingly.
 */
export function record(op: string, inputs: Tensor[], out: Tensor, backward: BackwardRule): Tensor {
  if (gradEnabled && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    nodes.push({ op, inputs, out, backward, depth: scopeDepth() });
  }
  return out;
}

function isLeaf(t: Tensor, producers: Set<Tensor>): boolean {
  return !producers.has(t);
}

/**
 * Backpropagates from `root`. The seed gradient is `seed` (same shape as
 * root) or ones. Leaf tensors (parameters, inputs) keep their `.grad`
 * beyond the current scope; intermediate gradients are released as soon as
 * their node has run. Clears the tape.
 */
export function backward(root: Tensor, seed?: Tensor): void {
  if (seed && seed.size !== root.size) {
    throw new ShapeError(
      `backward(): seed ${fmtShape(seed.shape)} does not match root ${fmtShape(root.shape)}`,
    );
  }
  const producers = new Set(nodes.map((n) => n.out));
  accumulate(root, seed ? seed.view(root.shape) : full(root.shape, 1), false);
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i];
    const dOut = node.out.grad;
    if (!dOut) continue;
    const needs = node.inputs.map((t) => t.requiresGrad);
    const grads = node.backward(dOut, needs);
    grads.forEach((g, j) => {
      if (!g) return;
      const input = node.inputs[j];
      if (needs[j]) accumulate(input, g, isLeaf(input, producers));
      else g.release();
    });
    if (node.out !== root) {
      node.out.grad = null;
      dOut.release();
    }
  }
  nodes = [];
}

/**
 * `a + b` for same-shape tensors, not recorded: gradient accumulation. The
 * kernel is called directly (not the `add` op), so the tape does not depend
 * on the ops that record on it.
 */
export function addSameShape(a: Tensor, b: Tensor): Tensor {
  const out = empty(a.shape);
  binaryKernel(gpu(), "add", out.buffer, a.buffer, b.buffer, a.size, b.size);
  return out;
}

function accumulate(t: Tensor, g: Tensor, leaf: boolean): void {
  if (g.size !== t.size) {
    throw new ShapeError(
      `backward(): gradient ${fmtShape(g.shape)} does not match ${t} ${fmtShape(t.shape)}`,
    );
  }
  const sameShape = g.shape.length === t.shape.length && g.shape.every((d, i) => d === t.shape[i]);
  let next = sameShape ? g : g.view(t.shape);
  if (next !== g) g.release();
  if (t.grad) {
    const sum = addSameShape(t.grad, next);
    t.grad.release();
    next.release();
    next = sum;
  }
  t.grad = next;
  if (leaf) keep(next);
}
