/**
 * Memory scopes: every tensor created inside `tidy(fn)` is released when fn
 * returns, except the tensors in its result and those passed to `keep()`.
 * A training step runs in one scope, so its intermediates (activations,
 * gradients of non-parameters) go back to the pool at a known point.
 *
 * Tensors created outside any scope belong to the caller, who releases them.
 */

/** What a scope needs of a tensor. */
export interface Owned {
  /** Returns the storage to the pool; idempotent. */
  release(): void;
  /** True once released. */
  readonly released: boolean;
}

const stack: Set<Owned>[] = [];
const scopeEndHooks: ((depth: number) => void)[] = [];

/** Registers a new tensor with the innermost scope, if any. */
export function track(t: Owned): void {
  if (stack.length > 0) stack[stack.length - 1].add(t);
}

/** Removes `t` from every open scope: the caller now owns it. Returns `t`. */
export function keep<T extends Owned>(t: T): T {
  for (const s of stack) s.delete(t);
  return t;
}

/** Current nesting depth (0 = no scope). */
export function scopeDepth(): number {
  return stack.length;
}

/** Called with the depth being closed, before its tensors are released (the tape uses it). */
export function onScopeEnd(hook: (depth: number) => void): void {
  scopeEndHooks.push(hook);
}

function collect(value: unknown, out: Set<Owned>, seen = new Set<unknown>()): void {
  if (value === null || typeof value !== "object" || seen.has(value)) return;
  seen.add(value);
  if ("release" in value && "released" in value) {
    out.add(value as Owned);
    return;
  }
  if (Array.isArray(value)) { for (const v of value) collect(v, out, seen); }
  else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, out, seen);
  }
}

/**
 * Runs `fn` in a scope. Tensors it creates are released at the end, except
 * those reachable from its result (a tensor, or arrays / plain objects of
 * them), which move to the enclosing scope.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Owned>();
  stack.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    close(scope, new Set());
    throw e;
  }
  const survivors = new Set<Owned>();
  collect(result, survivors);
  close(scope, survivors);
  return result;
}

/** Async variant of `tidy`: the scope stays open across awaits inside fn. */
export async function tidyAsync<T>(fn: () => Promise<T>): Promise<T> {
  const scope = new Set<Owned>();
  stack.push(scope);
  let result: T;
  try {
    result = await fn();
  } catch (e) {
    close(scope, new Set());
    throw e;
  }
  const survivors = new Set<Owned>();
  collect(result, survivors);
  close(scope, survivors);
  return result;
}

function close(scope: Set<Owned>, survivors: Set<Owned>): void {
  const depth = stack.length;
  for (const hook of scopeEndHooks) hook(depth);
  if (stack[stack.length - 1] === scope) stack.pop();
  else stack.splice(stack.indexOf(scope), 1);
  const parent = stack[stack.length - 1];
  for (const t of scope) {
    if (survivors.has(t)) parent?.add(t);
    else t.release();
  }
}
