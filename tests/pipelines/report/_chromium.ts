/**
 * Headless Chromium for tests, driven through the DevTools protocol over
 * Deno's built-in WebSocket (no npm driver: playwright's launcher assumes
 * Node's child_process details). `launchChromium()` starts the browser on a
 * free port with a fresh profile, opens one page and returns a client whose
 * `send()` talks to that page; `close()` ends the browser (politely, then by
 * signal) and removes the profile. Debian's package: `apt-get install
 * chromium`; `SSD_CHROMIUM` overrides the binary.
 */

/** Where the browser binary is looked for. */
export const CHROMIUM_BIN = Deno.env.get("SSD_CHROMIUM") ?? "/usr/bin/chromium";

/** Flags that work in containers and CI: no sandbox (root), no GPU, no background traffic. */
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--no-default-browser-check",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-extensions",
  "--hide-scrollbars",
  "--mute-audio",
];

/** Seconds to wait for the browser to start or a page to load. */
export const BROWSER_TIMEOUT_S = 20;

/** Whether the browser binary is there (else the browser tests are skipped). */
export function hasChromium(): boolean {
  try {
    return Deno.statSync(CHROMIUM_BIN).isFile;
  } catch {
    return false;
  }
}

/** A DevTools event: method and params, e.g. `Runtime.consoleAPICalled`. */
export interface CdpEvent {
  /** Event name. */
  method: string;
  /** Its parameters. */
  // deno-lint-ignore no-explicit-any -- protocol payloads are untyped JSON
  params: any;
}

/** A page of a running headless Chromium. */
export interface ChromiumPage {
  /** Sends a command to the page and resolves with its result. */
  // deno-lint-ignore no-explicit-any -- protocol payloads are untyped JSON
  send(method: string, params?: Record<string, unknown>): Promise<any>;
  /** Resolves with the first page event named `method` from now on. */
  waitFor(method: string): Promise<CdpEvent>;
  /** Every page event so far, in order. */
  events: CdpEvent[];
  /** The browser's stderr so far (for failure messages). */
  stderr(): string;
  /** Ends the browser and removes its profile; safe to call twice. */
  close(): Promise<void>;
}

function withTimeout<T>(p: Promise<T>, what: string | (() => string)): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => {
        const name = typeof what === "string" ? what : what();
        reject(new Error(`${name}: no answer in ${BROWSER_TIMEOUT_S} s`));
      },
      BROWSER_TIMEOUT_S * 1000,
    );
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Starts the browser, attaches to a fresh blank page and returns it. */
export async function launchChromium(): Promise<ChromiumPage> {
  const profile = await Deno.makeTempDir({ prefix: "ssd_chromium_" });
  const child = new Deno.Command(CHROMIUM_BIN, {
    args: [...FLAGS, `--user-data-dir=${profile}`, "--remote-debugging-port=0", "about:blank"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let log = "";
  let wsUrl: (url: string) => void = () => {};
  const endpoint = new Promise<string>((resolve) => (wsUrl = resolve));
  // Drained to the end: a full stderr pipe would stall the browser.
  const drain = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of child.stderr) {
      log += dec.decode(chunk, { stream: true });
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(log);
      if (m) wsUrl(m[1]);
    }
  })();
  let ws: WebSocket | null = null;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    try {
      if (ws?.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify({ id: 0, method: "Browser.close" }));
      }
    } catch { /* already gone */ }
    const exited = await Promise.race([
      child.status.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 3000)),
    ]);
    if (!exited) {
      try {
        child.kill("SIGKILL");
      } catch { /* exited meanwhile */ }
      await child.status;
    }
    ws?.close();
    await drain.catch(() => {});
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  };
  try {
    const url = await withTimeout(endpoint, () => `${CHROMIUM_BIN} did not start (stderr: ${log})`);
    const socket = new WebSocket(url);
    ws = socket;
    await withTimeout(
      new Promise((resolve, reject) => {
        socket.onopen = resolve;
        socket.onerror = () => reject(new Error(`cannot connect to ${url}`));
      }),
      "DevTools connection",
    );
    let nextId = 1;
    // deno-lint-ignore no-explicit-any -- protocol payloads are untyped JSON
    const pending = new Map<number, { resolve(v: any): void; reject(e: Error): void }>();
    const events: CdpEvent[] = [];
    const waiters: { method: string; resolve(e: CdpEvent): void }[] = [];
    let session = "";
    socket.onmessage = (m) => {
      const msg = JSON.parse(m.data as string);
      if (msg.id !== undefined) {
        const p = pending.get(msg.id);
        pending.delete(msg.id);
        if (msg.error) p?.reject(new Error(`${msg.error.message} (${msg.error.code})`));
        else p?.resolve(msg.result);
      } else if (msg.sessionId === session) {
        const ev = { method: msg.method, params: msg.params };
        events.push(ev);
        for (let i = waiters.length - 1; i >= 0; i--) {
          if (waiters[i].method === ev.method) waiters.splice(i, 1)[0].resolve(ev);
        }
      }
    };
    const call = (method: string, params: Record<string, unknown> = {}, sessionId = "") => {
      const id = nextId++;
      const msg = sessionId ? { id, method, params, sessionId } : { id, method, params };
      socket.send(JSON.stringify(msg));
      return withTimeout(
        // deno-lint-ignore no-explicit-any -- protocol payloads are untyped JSON
        new Promise<any>((resolve, reject) => pending.set(id, { resolve, reject })),
        method,
      );
    };
    const { targetId } = await call("Target.createTarget", { url: "about:blank" });
    session = (await call("Target.attachToTarget", { targetId, flatten: true })).sessionId;
    return {
      send: (method, params = {}) => call(method, params, session),
      waitFor: (method) =>
        withTimeout(new Promise((resolve) => waiters.push({ method, resolve })), method),
      events,
      stderr: () => log,
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
