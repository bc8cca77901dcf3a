// Drives the ground console in Debian's headless Chromium as an operator would: load it, find the
// detections on the map, open a chip, zoom to it, and send a command. tests/tests/console.rs
// starts the ground station with its archive and runs this; any failed check exits non-zero with
// what was expected and what was found.
//
// Environment: KESTREL_CONSOLE_URL, KESTREL_OPERATOR_TOKEN, KESTREL_EXPECT_DETECTIONS,
// KESTREL_SCREENSHOTS (a folder), KESTREL_CHROMIUM (default /usr/bin/chromium).

import { chromium } from "playwright-core";

const url = process.env.KESTREL_CONSOLE_URL;
const token = process.env.KESTREL_OPERATOR_TOKEN;
const expected = Number(process.env.KESTREL_EXPECT_DETECTIONS);
const shots = process.env.KESTREL_SCREENSHOTS;
const executablePath = process.env.KESTREL_CHROMIUM || "/usr/bin/chromium";

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

const timings = {};
const browser = await chromium.launch({
  executablePath,
  // this machine's network is closed: without these Chromium keeps trying Google's hosts
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const pageErrors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  page.on("pageerror", (e) => pageErrors.push(e.message));
  const shot = (name) => page.screenshot({ path: `${shots}/${name}.png` });
  const mapData = () => page.$eval("#map", (c) => ({ ...c.dataset }));
  const view = () => page.evaluate(() => window.kestrelConsole.view());
  const targets = (kind) => page.evaluate((k) => window.kestrelConsole.targets().filter((t) => t.kind === k), kind);
  const mapBox = async () => page.locator("#map").boundingBox();
  const clickOnMap = async (t) => {
    const box = await mapBox();
    await page.mouse.click(box.x + t.x, box.y + t.y);
  };
  const waitForMapLoad = (before) => page.waitForFunction((n) => Number(document.getElementById("map").dataset.loads) > n, Number(before.loads), { timeout: 15000 });

  // 1. load: every detection of the archive on the map, clustered
  let started = Date.now();
  await page.goto(url);
  await page.waitForSelector("body[data-ready='1']", { timeout: 30000 });
  timings.load_to_ready_ms = Date.now() - started;
  const counts = await page.textContent("#archive-counts");
  check(counts.includes(`${expected} detections`), `the header counts ${expected} detections; it says "${counts}"`);
  let data = await mapData();
  check(Number(data.detections) === expected, `the world map shows all ${expected} detections; it shows ${data.detections}`);
  check(Number(data.clusters) > 0 && Number(data.points) === 0, `zoomed out, detections are clustered: ${JSON.stringify(data)}`);
  check(Number(await page.$eval("#passes", (c) => c.dataset.passes)) > 0, "the pass timeline has passes");
  for (const plot of ["temperatures", "power", "queue"]) {
    const points = await page.$eval(`[data-plot="${plot}"]`, (p) => Number(p.dataset.points));
    check(points > 0, `the ${plot} plot has data`);
  }
  check((await page.locator("#events tbody tr.sev-Warning").count()) > 0, "the event log shows the warning");
  check((await page.locator("#links tbody td.yes").count()) === 1, "the link table shows the connected station");
  check((await page.locator("#gallery .card").count()) === 24, "the gallery shows a page of 24 detections");
  await page.screenshot({ path: `${shots}/console-overview.png`, fullPage: true });

  // 2. a cluster clicked zooms in on it
  const scaleBefore = (await view()).scale;
  const clusters = await targets("cluster");
  data = await mapData();
  await clickOnMap(clusters[0]);
  await waitForMapLoad(data);
  check((await view()).scale > scaleBefore * 3, "clicking a cluster zooms in");

  // 3. the newest detection's chip from the gallery, then on the map
  await page.click("#gallery .card >> nth=0");
  await page.waitForSelector("#chip-dialog[open]");
  started = Date.now();
  await page.waitForFunction(() => document.getElementById("chip-image").naturalWidth > 0, null, { timeout: 10000 });
  timings.chip_ms = Date.now() - started;
  const details = await page.textContent("#chip-details");
  check(details.includes("vessel"), `the chip's details name its class: "${details}"`);
  await page.screenshot({ path: `${shots}/console-chip.png` });
  data = await mapData();
  await page.click("#chip-show");
  await waitForMapLoad(data);
  data = await mapData();
  check(Number(data.points) > 0 && Number(data.clusters) === 0, `zoomed to the chip's place, detections are drawn one by one: ${JSON.stringify(data)}`);
  // every other frame's detections are oriented boxes: drawn as their rotated outlines
  check(Number(data.outlines) > 0 && Number(data.outlines) < Number(data.points), `oriented detections are drawn as their outlines: ${JSON.stringify(data)}`);
  await shot("console-map-zoomed");
  // a detection on the map opens its chip too
  const points = await targets("detection");
  await clickOnMap(points[0]);
  await page.waitForSelector("#chip-dialog[open]");
  check((await page.textContent("#chip-details")).includes("Latitude"), "a detection clicked on the map shows its details");
  await page.click("#chip-close");

  // 4. commands: refused without the right token, sent and in the history with it
  await page.fill("#operator", "console-test");
  await page.fill("#token", "not-the-operator-token");
  await page.selectOption("#command-kind", "SetMode");
  await page.selectOption("#command-fields select[name=mode]", "Throttled");
  await page.click("#command-send");
  await page.waitForFunction(() => document.getElementById("command-result").textContent.includes("refused"), null, { timeout: 10000 });
  await page.fill("#token", token);
  await page.dispatchEvent("#token", "change");
  await page.click("#command-send");
  await page.waitForFunction(() => document.getElementById("command-result").classList.contains("ok"), null, { timeout: 10000 });
  const result = await page.textContent("#command-result");
  check(result.includes("through 1 station(s)"), `the command went through the one station: "${result}"`);
  await page.waitForFunction(() => document.querySelector("#command-history tbody").textContent.includes("console-test"), null, { timeout: 10000 });
  const history = await page.textContent("#command-history tbody");
  check(history.includes("SetMode") && history.includes("Throttled"), `the history shows the command: "${history}"`);
  await page.locator("#command-panel").scrollIntoViewIfNeeded();
  await page.locator("#command-panel").screenshot({ path: `${shots}/console-commands.png` });

  check(pageErrors.length === 0, `no script errors: ${pageErrors.join("; ")}`);
  console.log(JSON.stringify({ ok: true, timings }));
} catch (e) {
  console.error(e.message);
  if (pageErrors.length) console.error(`script errors in the page: ${pageErrors.join("; ")}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
