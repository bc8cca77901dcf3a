// Drives the ground console in Debian's headless Chromium as an operator would: load it, find the
// detections on the map, open a chip, zoom to it, see and acknowledge an alarm, filter the event
// log, and send commands from the dictionary's forms, following their stages. tests/tests/console.rs
// starts the ground station with its archive and runs this; any failed check exits non-zero with
// what was expected and what was found.
//
// Environment: KESTREL_CONSOLE_URL, KESTREL_OPERATOR_TOKEN, KESTREL_OPERATOR (its name),
// KESTREL_EXPECT_DETECTIONS, KESTREL_REDOWNLINK_ID (a product id past 2^53), KESTREL_UNKNOWN_FRAME,
// KESTREL_SCREENSHOTS (a folder), KESTREL_CHROMIUM (default /usr/bin/chromium).

import { chromium } from "playwright-core";

const url = process.env.KESTREL_CONSOLE_URL;
const token = process.env.KESTREL_OPERATOR_TOKEN;
const operator = process.env.KESTREL_OPERATOR;
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
let failurePage = null;
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  failurePage = page;
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
  for (const plot of ["temperature_payload_c", "battery_soc", "duty", "queue"]) {
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

  // 4. housekeeping over its limit: highlighted, counted as an alarm in the header, acknowledged
  const alarms = () => page.$eval("#alarm-count", (b) => ({ ...b.dataset, text: b.textContent, raised: b.classList.contains("alarm") }));
  let header = await alarms();
  check(Number(header.alarms) >= 1 && Number(header.unacknowledged) >= 1 && header.raised,
    `the header counts the payload's alarm: ${JSON.stringify(header)}`);
  const payloadRow = page.locator('#limits tr[data-channel="temperature_payload_c"]');
  check((await payloadRow.getAttribute("class")) === "level-alarm", "the payload's temperature is highlighted as an alarm");
  const plot = await page.$eval('[data-plot="temperature_payload_c"]', (p) => ({ ...p.dataset }));
  check(Number(plot.limits) === 4 && Number(plot.outside) >= 3, `the payload's plot draws its four limit lines and marks the samples outside: ${JSON.stringify(plot)}`);
  await page.locator("#telemetry-panel").screenshot({ path: `${shots}/console-alarms.png` });
  await payloadRow.locator("button[data-acknowledge]").click();
  await page.waitForFunction(() => document.getElementById("alarm-count").dataset.unacknowledged === "0", null, { timeout: 10000 });
  header = await alarms();
  check(Number(header.alarms) >= 1 && !header.raised, `acknowledged, the alarm is still counted but no longer raised: ${JSON.stringify(header)}`);
  check((await payloadRow.textContent()).includes("acknowledged"), "the limits table says the alarm was acknowledged");

  // 5. the event log filtered by severity, then by source
  const eventRows = () => page.$$eval("#events tbody tr[data-source]", (rows) => rows.map((r) => ({ ...r.dataset })));
  await page.selectOption("#event-severity", "Warning");
  await page.waitForFunction(() => [...document.querySelectorAll("#events tbody tr[data-severity]")].every((r) => r.dataset.severity !== "Info"), null, { timeout: 10000 });
  let rows = await eventRows();
  check(rows.length === 2, `two warnings in the log: ${JSON.stringify(rows)}`);
  await page.selectOption("#event-source", "command");
  await page.waitForFunction(() => document.querySelectorAll("#events tbody tr[data-source]").length === 1, null, { timeout: 10000 });
  rows = await eventRows();
  check(rows.every((r) => r.source === "command"), `only the command source's events: ${JSON.stringify(rows)}`);
  await page.selectOption("#event-severity", "Info");
  await page.selectOption("#event-source", "");

  // 6. commands, from the dictionary's forms: refused without a right token
  const result = () => page.textContent("#command-result");
  const resultSays = (text) => page.waitForFunction((t) => document.getElementById("command-result").textContent.includes(t), text, { timeout: 10000 });
  const choose = async (kind, fields) => {
    await page.selectOption("#command-kind", kind);
    for (const [name, value] of Object.entries(fields)) {
      const field = page.locator(`#command-fields [name="${name}"]`);
      if ((await field.evaluate((e) => e.tagName)) === "SELECT") await field.selectOption(value);
      else await field.fill(value);
    }
  };
  /// Sends the form; the command's id as the console shows it (decimal digits, never rounded).
  const send = async () => {
    const before = await result();
    await page.click("#command-send");
    await page.waitForFunction((b) => { const r = document.getElementById("command-result"); return r.textContent !== b && r.textContent !== "sending…"; }, before, { timeout: 10000 });
    const said = await result();
    const id = /command (\d+)/.exec(said);
    check(id, `the console names the command it sent: "${said}"`);
    return id[1];
  };
  const stagesOf = (id, last) => page.waitForFunction(([i, l]) => {
    const card = document.querySelector(`#command-stages .command-life[data-id="${i}"]`);
    return card && (card.dataset.stages || "").split(" ").includes(l);
  }, [id, last], { timeout: 15000 }).then(() => page.$eval(`#command-stages .command-life[data-id="${id}"]`, (c) => ({ stages: c.dataset.stages, text: c.textContent })));

  await page.fill("#token", "not-the-operator-token");
  await choose("SetMode", { mode: "Throttled" });
  await page.click("#command-send");
  await resultSays("refused");
  await page.fill("#token", token);
  await page.dispatchEvent("#token", "change");

  // a command's stages, live: released, then accepted and completed as the spacecraft reports
  const commands = {};
  commands.throttled = await send();
  check((await result()).includes("through 1 station(s)"), `the command went through the one station: "${await result()}"`);
  let life = await stagesOf(commands.throttled, "completed");
  check(life.stages === "submitted released accepted completed", `the command's stages: ${JSON.stringify(life)}`);

  // an id past 2^53, typed in, goes up digit for digit
  const bigId = process.env.KESTREL_REDOWNLINK_ID;
  await choose("Redownlink", { product_id: bigId });
  commands.redownlink = await send();
  life = await stagesOf(commands.redownlink, "completed");
  check(life.text.includes(bigId), `the command as audited names product ${bigId}: ${life.text}`);

  // refused on board: the stage and the spacecraft's reason
  const frame = process.env.KESTREL_UNKNOWN_FRAME;
  await choose("RequestTile", { frame_id: frame, x: "0", y: "0", width: "64", height: "64" });
  commands.tile = await send();
  life = await stagesOf(commands.tile, "refused");
  check(life.text.includes(`refused on board: frame ${frame} is not on board`), `the refusal and its reason: ${life.text}`);

  // refused on the ground: out of the parameter's range (the form), an unknown parameter (the API)
  await choose("SetParameter", { name: "max_duty", value: "1.5" });
  await page.click("#command-send");
  await resultSays("max_duty takes 0 to 1");
  await choose("raw", { json: '{"SetParameter": {"name": "max_dutty", "value": 0.5}}' });
  await page.click("#command-send");
  await resultSays("refused:");
  check((await result()).includes("max_dutty"), `the API's refusal names the parameter: "${await result()}"`);

  // hazardous: held until confirmed in the dialog, then released
  await choose("SetMode", { mode: "Safe" });
  commands.safe = await send();
  await page.waitForSelector("#confirm-dialog[open]");
  check((await page.textContent("#confirm-command")).includes("Safe"), "the dialog shows the hazardous command");
  await stagesOf(commands.safe, "awaiting_confirmation");
  await page.click("#confirm-send");
  life = await stagesOf(commands.safe, "completed");
  check(life.stages === "submitted awaiting_confirmation confirmed released accepted completed", `the hazardous command's stages: ${JSON.stringify(life)}`);

  await page.waitForFunction((o) => document.querySelector("#command-history tbody").textContent.includes(o), operator, { timeout: 10000 });
  const history = await page.textContent("#command-history tbody");
  check(history.includes("Redownlink") && history.includes(bigId), `the history shows the commands, ids whole: "${history}"`);
  await page.locator("#command-panel").scrollIntoViewIfNeeded();
  await page.locator("#command-panel").screenshot({ path: `${shots}/console-commands.png` });

  check(pageErrors.length === 0, `no script errors: ${pageErrors.join("; ")}`);
  console.log(JSON.stringify({ ok: true, timings, commands }));
} catch (e) {
  console.error(e.stack || e.message); // the stack names the step that failed
  if (failurePage) await failurePage.screenshot({ path: `${shots}/console-failure.png`, fullPage: true }).catch(() => {});
  if (pageErrors.length) console.error(`script errors in the page: ${pageErrors.join("; ")}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
