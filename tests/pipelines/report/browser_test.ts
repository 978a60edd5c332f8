/**
 * The `ssd report` page in a real browser: headless Chromium opens the file
 * and the test checks, in the rendered page, that every plot is an SVG with
 * a non-empty box whose marks drew something, that nothing logged an error
 * (console, exceptions, CSP violations) and that nothing was fetched, then
 * saves a full-page screenshot (to `$SSD_REPORT_SCREENSHOT`, else
 * out/test/report_browser.png; the path is printed). Skipped, saying so,
 * where Chromium is not installed (`apt-get install chromium`; `.ci/run`
 * installs it).
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { runReport } from "../../../pipelines/report/run.ts";
import { CHROMIUM_BIN, type ChromiumPage, hasChromium, launchChromium } from "./_chromium.ts";
import { writeBench, writeSyntheticRun } from "./_fixtures.ts";

/** Default screenshot path (out/ is git-ignored; each run overwrites it). */
const SCREENSHOT = fileURLToPath(new URL("../../../out/test/report_browser.png", import.meta.url));

const available = hasChromium();
if (!available) {
  console.log(
    `report_browser_test: skipped: no Chromium at ${CHROMIUM_BIN} ` +
      "(install Debian's chromium, or set SSD_CHROMIUM to the binary)",
  );
}

/** What the page reports about one figure, measured by the browser's layout. */
interface FigureInfo {
  id: string;
  svgs: number;
  width: number;
  height: number;
  /** Drawn marks (paths with data, rules, symbols) inside the SVG's mark groups. */
  marks: number;
  /** Union of the marks' boxes, in page pixels. */
  markWidth: number;
  markHeight: number;
}

const MEASURE = `(() => [...document.querySelectorAll("figure[data-plot]")].map((fig) => {
  const svgs = fig.querySelectorAll("svg");
  const svg = svgs[0];
  const box = svg ? svg.getBoundingClientRect() : { width: 0, height: 0 };
  const drawn = svg ? [...svg.querySelectorAll(".role-mark > path, .role-mark > line")]
    .filter((el) => el.tagName === "line" || (el.getAttribute("d") || "").length > 8) : [];
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const el of drawn) {
    const r = el.getBoundingClientRect();
    x0 = Math.min(x0, r.left); y0 = Math.min(y0, r.top);
    x1 = Math.max(x1, r.right); y1 = Math.max(y1, r.bottom);
  }
  return { id: fig.dataset.plot, svgs: svgs.length, width: box.width, height: box.height,
    marks: drawn.length, markWidth: drawn.length ? x1 - x0 : 0, markHeight: drawn.length ? y1 - y0 : 0 };
}))()`;

/** Problems the page reported: console errors, uncaught exceptions, log errors (CSP), fetches. */
function problems(page: ChromiumPage): string[] {
  const out: string[] = [];
  for (const { method, params } of page.events) {
    if (method === "Runtime.consoleAPICalled" && ["error", "assert"].includes(params.type)) {
      out.push(`console.${params.type}: ${JSON.stringify(params.args)}`);
    } else if (method === "Runtime.exceptionThrown") {
      out.push(`exception: ${params.exceptionDetails?.text}`);
    } else if (method === "Log.entryAdded" && params.entry.level === "error") {
      out.push(`log: ${params.entry.text} ${params.entry.url ?? ""}`);
    } else if (method === "Network.requestWillBeSent") {
      const url: string = params.request.url;
      if (!url.startsWith("file:") && !url.startsWith("data:")) out.push(`fetch: ${url}`);
    } else if (method === "Network.loadingFailed") {
      out.push(`load failed: ${params.errorText}`);
    }
  }
  return out;
}

Deno.test({
  name: "ssd report's page renders every plot in headless Chromium, with no error",
  ignore: !available,
  // The browser's own threads and pipes outlive single awaits; it is closed in finally.
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "ssd_report_browser_" });
    let page: ChromiumPage | null = null;
    try {
      const runs = [
        await writeSyntheticRun(join(dir, "ssd"), {
          schedule: "ssd",
          steps: 800,
          switchAt: 400,
          sparseSteps: 200,
          monitorEvery: 50,
          evalEvery: 100,
          checkpoint: true,
        }),
        await writeSyntheticRun(join(dir, "dense"), {
          schedule: "dense",
          steps: 800,
          evalEvery: 100,
        }),
        await writeSyntheticRun(join(dir, "sparse"), {
          schedule: "sparse",
          steps: 800,
          switchAt: 80,
        }),
      ];
      const bench = await writeBench(join(dir, "bench.json"), "ssd/final.safetensors", [
        2,
        4,
        8,
        16,
      ]);
      const out = join(dir, "report.html");
      const report = await runReport({ runs, out, svg_dir: null, bench: [bench] });

      page = await launchChromium();
      for (const domain of ["Page", "Runtime", "Log", "Network"]) {
        await page.send(`${domain}.enable`);
      }
      await page.send("Emulation.setDeviceMetricsOverride", {
        width: 1100,
        height: 900,
        deviceScaleFactor: 1,
        mobile: false,
      });
      const loaded = page.waitFor("Page.loadEventFired");
      const nav = await page.send("Page.navigate", { url: pathToFileURL(out).href });
      assert.equal(nav.errorText, undefined, `navigation: ${nav.errorText}`);
      await loaded;

      const { result } = await page.send("Runtime.evaluate", {
        expression: MEASURE,
        returnByValue: true,
      });
      const figs = result.value as FigureInfo[];
      assert.deepEqual(figs.map((f) => f.id), report.plots, "a figure per plot, in order");
      for (const f of figs) {
        assert.equal(f.svgs, 1, `${f.id}: one svg`);
        assert.ok(f.width >= 300 && f.height >= 150, `${f.id}: svg box ${f.width}x${f.height}`);
        assert.ok(f.marks >= 2, `${f.id}: ${f.marks} drawn marks`);
        assert.ok(
          f.markWidth > 100 && f.markHeight > 20,
          `${f.id}: marks span ${f.markWidth}x${f.markHeight}`,
        );
      }
      const title = await page.send("Runtime.evaluate", {
        expression: "document.title",
        returnByValue: true,
      });
      assert.equal(title.result.value, "ssd report: ssd, dense, sparse");

      const { cssContentSize } = await page.send("Page.getLayoutMetrics");
      const shot = await page.send("Page.captureScreenshot", {
        format: "png",
        captureBeyondViewport: true,
        clip: { x: 0, y: 0, width: cssContentSize.width, height: cssContentSize.height, scale: 1 },
      });
      const png = Uint8Array.from(atob(shot.data), (c) => c.charCodeAt(0));
      assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], "a PNG");
      assert.ok(png.length > 20_000, `screenshot of ${png.length} bytes: a blank page?`);
      const shotPath = Deno.env.get("SSD_REPORT_SCREENSHOT") ?? SCREENSHOT;
      await Deno.mkdir(dirname(shotPath), { recursive: true });
      await Deno.writeFile(shotPath, png);
      console.log(`report_browser_test: screenshot ${shotPath}`);

      assert.deepEqual(problems(page), [], "the page logged errors or fetched something");

      // The same checks catch a page that fetches or runs something (the CSP blocks both).
      const bad = join(dir, "bad.html");
      const html = await Deno.readTextFile(out);
      await Deno.writeTextFile(
        bad,
        html.replace(
          "</main>",
          '<img src="https://example.invalid/x.png"><script>1</script></main>',
        ),
      );
      page.events.length = 0;
      const reloaded = page.waitFor("Page.loadEventFired");
      await page.send("Page.navigate", { url: pathToFileURL(bad).href });
      await reloaded;
      const seen = problems(page).join("\n");
      assert.match(seen, /fetch: https:\/\/example\.invalid\/x\.png/);
      assert.match(seen, /log: .*inline script.*Content Security Policy/);
    } catch (e) {
      if (page) console.error(`chromium stderr:\n${page.stderr().slice(-2000)}`);
      throw e;
    } finally {
      await page?.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
