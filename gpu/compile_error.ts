/**
 * Readable shader compilation errors: each error of a module's compilation
 * info as `line:col: error: message`, then the offending source line and a
 * caret under the column (as jax-js and Tint print them).
 */

/** The `GPUCompilationMessage` fields the format uses. */
export interface CompileMessage {
  /** "error", "warning" or "info". */
  readonly type: string;
  /** 1-based line of the source. */
  readonly lineNum: number;
  /** 1-based column of the line. */
  readonly linePos: number;
  /** The compiler's text (the first line is kept). */
  readonly message: string;
}

// Naga prefixes its message with the shader label and repeats the source
// span in a box; the caret lines below say the same more briefly.
function firstLine(message: string): string {
  const line = message.trim().split("\n")[0] ?? "";
  return line.replace(/^Shader '[^']*' (parsing|validation) error: /, "");
}

/**
 * The message of kernel `name` failing to compile: one `line:col` entry per
 * error in `messages` with its line of `code`, or `fallback` (the error
 * scope's text) when the compiler gave none (a pipeline, not a module, error).
 */
export function compileErrorMessage(
  name: string,
  code: string,
  messages: readonly CompileMessage[],
  fallback: string,
): string {
  const lines = code.split("\n");
  const errors = messages.filter((m) => m.type === "error");
  if (errors.length === 0) return `Kernel ${name} failed to compile: ${fallback.trim()}`;
  const entries = errors.map((m) => {
    const source = lines[m.lineNum - 1] ?? "";
    const caret = " ".repeat(Math.max(0, m.linePos - 1)) + "^";
    return `${m.lineNum}:${m.linePos}: error: ${firstLine(m.message)}\n${source}\n${caret}`;
  });
  return `Kernel ${name} failed to compile: ${entries.join("\n")}`;
}
