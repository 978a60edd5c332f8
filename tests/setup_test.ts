/**
 * scripts/setup.sh, the installer behind ./ssd-demo, ./ssd-test and .ci/run.
 * Nothing here installs anything: the runs that lack Deno use a PATH without
 * it, a fake HOME and a fake npm (and, where the script would install, fake
 * apt-get and dpkg-query too), so every install goes to a fake that only
 * records it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const SETUP = join(ROOT, "scripts", "setup.sh");

/** The version setup.sh pins, read from the script itself. */
async function pinnedDeno(): Promise<string> {
  const m = (await Deno.readTextFile(SETUP)).match(/^SETUP_DENO_VERSION=(\S+)$/m);
  assert.ok(m, "setup.sh pins no SETUP_DENO_VERSION");
  return m[1];
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(cmd: string, args: string[], env?: Record<string, string>): Promise<Run> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    stdin: "null",
    ...(env ? { env, clearEnv: true } : {}),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

const scratch = await Deno.makeTempDir({ prefix: "ssd-setup-test-" });
globalThis.addEventListener("unload", () => Deno.removeSync(scratch, { recursive: true }));

/**
 * A folder of links to every program on this PATH except deno and sudo: a
 * PATH that lacks Deno's folder while keeping bash, dpkg and coreutils.
 */
async function farmWithoutDeno(): Promise<string> {
  const farm = join(scratch, "farm");
  await Deno.mkdir(farm);
  const seen = new Set(["deno", "sudo"]);
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch {
      continue; // a PATH entry that does not exist
    }
    for (const e of entries) {
      if (e.isDirectory || seen.has(e.name)) continue;
      seen.add(e.name);
      await Deno.symlink(join(dir, e.name), join(farm, e.name));
    }
  }
  return farm;
}
const FARM = await farmWithoutDeno();

/**
 * A sandbox for one run: a fake HOME, an empty npm prefix, and fake programs
 * (name → sh body) in a folder ahead of the farm. Each fake logs its
 * arguments; `recorded` returns the npm and apt-get calls that would install. The fake npm answers `npm prefix -g` with the sandbox's
 * prefix and records everything else.
 */
async function sandbox(name: string, fakes: Record<string, string> = {}) {
  const dir = join(scratch, name);
  const bin = join(dir, "bin");
  const home = join(dir, "home");
  const prefix = join(dir, "npm-prefix");
  const calls = join(dir, "calls.log");
  for (const d of [bin, home, join(prefix, "bin")]) await Deno.mkdir(d, { recursive: true });
  await Deno.writeTextFile(calls, "");
  const all: Record<string, string> = {
    npm: `if [ "$1 $2" = "prefix -g" ]; then echo "${prefix}"; exit 0; fi\nexit 1`,
    ...fakes,
  };
  for (const [prog, body] of Object.entries(all)) {
    const path = join(bin, prog);
    await Deno.writeTextFile(
      path,
      `#!/bin/sh\necho "${prog} $*" >> "${calls}"\n${body}\n`,
    );
    await Deno.chmod(path, 0o755);
  }
  const env = { PATH: `${bin}:${FARM}`, HOME: home, LANG: "C" };
  const recorded = async () =>
    (await Deno.readTextFile(calls)).split("\n").filter((l) =>
      /^(apt-get|npm) /.test(l) && !l.startsWith("npm prefix")
    );
  return { env, prefix, recorded };
}

Deno.test("setup --check on this machine: nothing missing, nothing on stdout", async () => {
  const r = await run("bash", [SETUP, "--check"]);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /would install/);
  assert.match(r.stderr, /^setup: everything present$/m);
  assert.equal(r.stdout, "");
});

Deno.test("setup --check without deno on PATH (fake HOME, empty npm prefix): Deno is missing", async () => {
  const { env } = await sandbox("check-no-deno");
  const premise = await run("bash", ["-c", "command -v deno"], env);
  assert.notEqual(premise.code, 0, `deno still found at ${premise.stdout}`);

  const r = await run("bash", [SETUP, "--check"], env);
  assert.notEqual(r.code, 0, r.stderr);
  assert.equal(r.stdout, "");
  const missing = r.stderr.split("\n").filter((l) => l.startsWith("setup: would install"));
  const version = await pinnedDeno();
  const deno = missing.filter((l) => l.includes(`Deno ${version}`));
  assert.equal(deno.length, 1, r.stderr);
  assert.match(deno[0], /found: none/);
});

Deno.test("setup --check finds a Deno that npm installed outside PATH", async () => {
  const { env, prefix } = await sandbox("check-npm-deno");
  await Deno.symlink(Deno.execPath(), join(prefix, "bin", "deno"));
  const r = await run("bash", [SETUP, "--check"], env);
  assert.doesNotMatch(r.stderr, /Deno/, r.stderr);
  assert.equal(r.code, 0, r.stderr);
});

Deno.test("setup installs a missing Deno once, says so first, then is silent", async () => {
  const version = await pinnedDeno();
  // The fake npm "installs" by linking this test's deno into its prefix and,
  // like npm, reports on stdout (which setup must keep off the caller's);
  // apt-get and dpkg-query are fakes too, so nothing real is touched.
  const { env, prefix, recorded } = await sandbox("install-deno", {
    npm: `case "$1 $2" in
  "prefix -g") echo "PREFIX" ;;
  "install -g") ln -s "${Deno.execPath()}" "PREFIX/bin/deno" && echo "added 1 package" ;;
  *) exit 1 ;;
esac`.replaceAll("PREFIX", join(scratch, "install-deno", "npm-prefix")),
    "apt-get": "exit 1",
    "dpkg-query": 'echo "installed 25.0.7-2~bpo12+1"',
  });
  const first = await run("bash", [SETUP], env);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.stdout, "");
  const lines = first.stderr.trim().split("\n");
  const own = lines.filter((l) => l.startsWith("setup: "));
  assert.equal(own.length, 1, first.stderr);
  assert.match(
    own[0],
    new RegExp(`^setup: installing Deno ${version.replaceAll(".", "\\.")} .* with npm$`),
  );
  // Said before npm ran: npm's report follows, on stderr.
  assert.deepEqual(lines, [own[0], "added 1 package"]);
  assert.deepEqual(await recorded(), [`npm install -g deno@${version}`]);
  assert.ok((await Deno.lstat(join(prefix, "bin", "deno"))).isSymlink);

  const second = await run("bash", [SETUP], env);
  assert.equal(second.code, 0, second.stderr);
  assert.equal(second.stderr + second.stdout, "");
  assert.deepEqual(await recorded(), [`npm install -g deno@${version}`]);
});

Deno.test("setup without root or sudo: one line, non-zero exit, nothing attempted", async () => {
  // Not root (a fake `id`), no sudo in the farm, and an npm prefix nobody can
  // write: installing Deno needs root.
  const { env, recorded } = await sandbox("no-root", {
    id: 'if [ "$1" = "-u" ]; then echo 1000; else exit 1; fi',
    npm: `if [ "$1 $2" = "prefix -g" ]; then echo /nonexistent/npm-prefix; exit 0; fi\nexit 1`,
    "apt-get": "exit 1",
    "dpkg-query": 'echo "installed 25.0.7-2~bpo12+1"',
  });
  const r = await run("bash", [SETUP], env);
  assert.notEqual(r.code, 0);
  assert.equal(r.stdout, "");
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^setup: cannot install Deno [0-9.]+: that needs root or sudo /);
  assert.deepEqual(await recorded(), []);
});

Deno.test("setup: an unknown option is one line and exit 2", async () => {
  const r = await run("bash", [SETUP, "--bogus"]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(r.stderr, /unknown option '--bogus'/);
});

/** Every shell script in the repository: *.sh, or a file with a bash/sh shebang. */
async function shellScripts(dir = ROOT, rel = ""): Promise<string[]> {
  const skip = new Set([".git", "node_modules", "out", "runs", ".ssd-cache", ".scratch"]);
  const found: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const path = join(dir, e.name);
    const name = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) {
      if (!skip.has(e.name)) found.push(...await shellScripts(path, name));
    } else if (e.isFile) {
      if (e.name.endsWith(".sh")) {
        found.push(name);
        continue;
      }
      const head = new Uint8Array(64);
      const f = await Deno.open(path);
      const n = (await f.read(head)) ?? 0;
      f.close();
      const first = new TextDecoder().decode(head.subarray(0, n)).split("\n")[0];
      if (/^#!.*\b(bash|sh)\b/.test(first)) found.push(name);
    }
  }
  return found.sort();
}

Deno.test("every shell script passes bash -n", async () => {
  const scripts = await shellScripts();
  for (const s of ["scripts/setup.sh", "ssd-demo", "ssd-test", ".ci/run"]) {
    assert.ok(scripts.includes(s), `${s} not found among ${scripts.join(", ")}`);
  }
  for (const s of scripts) {
    const r = await run("bash", ["-n", join(ROOT, s)]);
    assert.equal(r.code, 0, `${s}: ${r.stderr}`);
  }
});

Deno.test("the entry points are executable and end in deno task", async () => {
  for (const [file, task] of [["ssd-demo", "demo"], ["ssd-test", "test"]]) {
    const info = await Deno.stat(join(ROOT, file));
    assert.ok((info.mode ?? 0) & 0o111, `${file} is not executable`);
    const text = await Deno.readTextFile(join(ROOT, file));
    assert.match(text, /^#!\/usr\/bin\/env bash\n/);
    assert.match(text, new RegExp(`\\nexec deno task ${task} "\\$@"\\n$`));
  }
});
