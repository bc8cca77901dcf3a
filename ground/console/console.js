// The Kestrel operator console. Plain modules, no framework and no network but this ground
// station's own API: a spacecraft operator's console must work on an isolated network.

const REFRESH_MS = 3000;
const GALLERY_PAGE = 24;
/// Detections are counted in cells of this many pixels when more than MAX_POINTS are in view.
const CLUSTER_CELL_PX = 48;
const MAX_POINTS = 500;

const $ = (id) => document.getElementById(id);

function setStatus(message) {
  $("status").textContent = message || "";
}

/// Ids are 64-bit: past 2^53 a JavaScript number would round them, so they are kept as the
/// digits the server sent (JSON.parse's source text access).
function keepBigIntegers(key, value, context) {
  return typeof value === "number" && !Number.isSafeInteger(value) && Number.isInteger(value) && context && context.source
    ? context.source
    : value;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text, keepBigIntegers) : null; } catch { body = text; }
  if (!response.ok) {
    const message = body && body.error ? body.error : `${response.status} ${response.statusText}`;
    const error = new Error(`${path}: ${message}`);
    error.status = response.status;
    error.body = body;
    throw error;
  }
  return body;
}

const utc = (ms) => new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "");
const fixed = (x, digits) => Number(x).toFixed(digits);
const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

/// A canvas sized to its box at the screen's pixel ratio, cleared; its context and CSS size.
function freshCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return [ctx, w, h];
}

// ---------------------------------------------------------------------------------------------
// The map: an equirectangular projection on a canvas, panned by dragging, zoomed by the wheel.

/// Decodes the TopoJSON of world-atlas into rings of [lon, lat].
function topologyRings(topology) {
  const [sx, sy] = topology.transform.scale;
  const [tx, ty] = topology.transform.translate;
  const arcs = topology.arcs.map((arc) => {
    let x = 0;
    let y = 0;
    return arc.map(([dx, dy]) => {
      x += dx;
      y += dy;
      return [x * sx + tx, y * sy + ty];
    });
  });
  const arcPoints = (index) => (index >= 0 ? arcs[index] : arcs[~index].slice().reverse());
  const ring = (indices) => indices.flatMap((index, i) => (i === 0 ? arcPoints(index) : arcPoints(index).slice(1)));
  const rings = [];
  for (const geometry of topology.objects.land.geometries) {
    const polygons = geometry.type === "Polygon" ? [geometry.arcs] : geometry.type === "MultiPolygon" ? geometry.arcs : [];
    for (const polygon of polygons) for (const r of polygon) rings.push(ring(r));
  }
  return rings;
}

const map = {
  canvas: null,
  land: [],
  view: { lon: 0, lat: 20, scale: 3 }, // scale: pixels per degree
  track: [],
  sites: [],
  frames: [],
  clusters: [],
  points: [],
  drawnTargets: [], // [{x, y, r, kind, item}] for clicks
  loadSerial: 0,
};

function mapSize() {
  const c = map.canvas;
  return [c.clientWidth, c.clientHeight];
}

function project(lon, lat) {
  const [w, h] = mapSize();
  return [(lon - map.view.lon) * map.view.scale + w / 2, (map.view.lat - lat) * map.view.scale + h / 2];
}

function unproject(x, y) {
  const [w, h] = mapSize();
  return [(x - w / 2) / map.view.scale + map.view.lon, map.view.lat - (y - h / 2) / map.view.scale];
}

function visibleBox() {
  const [w, h] = mapSize();
  const [west, north] = unproject(0, 0);
  const [east, south] = unproject(w, h);
  return [Math.max(-180, west), Math.max(-90, south), Math.min(180, east), Math.min(90, north)];
}

function clampView() {
  const [w] = mapSize();
  map.view.scale = Math.min(Math.max(map.view.scale, w / 400), 200000);
  map.view.lat = Math.min(Math.max(map.view.lat, -90), 90);
  map.view.lon = Math.min(Math.max(map.view.lon, -180), 180);
}

/// A polyline of [lon, lat], broken where it crosses the antimeridian.
function strokeLonLat(ctx, points) {
  ctx.beginPath();
  let previous = null;
  for (const [lon, lat] of points) {
    const [x, y] = project(lon, lat);
    if (previous === null || Math.abs(lon - previous) > 180) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
    previous = lon;
  }
  ctx.stroke();
}

function drawMap() {
  const canvas = map.canvas;
  const [ctx, w, h] = freshCanvas(canvas);

  // graticule
  ctx.strokeStyle = "rgba(255,255,255,0.08)";
  ctx.lineWidth = 1;
  for (let lon = -180; lon <= 180; lon += 30) strokeLonLat(ctx, [[lon, -90], [lon, 90]]);
  for (let lat = -90; lat <= 90; lat += 30) strokeLonLat(ctx, [[-180, lat], [180, lat]]);

  // land
  ctx.fillStyle = "#2c3a2f";
  ctx.strokeStyle = "#56705b";
  ctx.beginPath();
  for (const ring of map.land) {
    ring.forEach(([lon, lat], i) => {
      const [x, y] = project(lon, lat);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.closePath();
  }
  ctx.fill("evenodd");
  ctx.stroke();

  // frame footprints
  ctx.strokeStyle = "#7fe0ff";
  ctx.fillStyle = "rgba(127,224,255,0.08)";
  for (const frame of map.frames) {
    ctx.beginPath();
    frame.footprint.forEach(([lat, lon], i) => {
      const [x, y] = project(lon, lat);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.closePath();
    ctx.fill();
    ctx.stroke();
  }

  // ground track, the part ahead dashed
  const now = state.spacecraftMs;
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = "#ffd84f";
  strokeLonLat(ctx, map.track.filter((p) => p.time_ms <= now).map((p) => [p.longitude, p.latitude]));
  ctx.setLineDash([5, 4]);
  strokeLonLat(ctx, map.track.filter((p) => p.time_ms >= now).map((p) => [p.longitude, p.latitude]));
  ctx.setLineDash([]);
  const here = map.track.reduce((best, p) => (best === null || Math.abs(p.time_ms - now) < Math.abs(best.time_ms - now) ? p : best), null);
  if (here) {
    const [x, y] = project(here.longitude, here.latitude);
    ctx.fillStyle = "#ffd84f";
    ctx.beginPath();
    ctx.arc(x, y, 5, 0, 2 * Math.PI);
    ctx.fill();
  }

  // stations
  ctx.fillStyle = "#5fd38d";
  ctx.font = "11px system-ui";
  for (const site of map.sites) {
    const [x, y] = project(site.longitude, site.latitude);
    ctx.beginPath();
    ctx.moveTo(x, y - 6);
    ctx.lineTo(x + 5, y + 4);
    ctx.lineTo(x - 5, y + 4);
    ctx.closePath();
    ctx.fill();
    ctx.fillText(site.name, x + 7, y + 4);
  }

  // detections: clusters, or each one
  const targets = [];
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  for (const cell of map.clusters) {
    const [x, y] = project(cell.longitude, cell.latitude);
    const r = 6 + 3 * Math.log10(cell.count + 1) * 2;
    ctx.fillStyle = "rgba(255,93,143,0.75)";
    ctx.beginPath();
    ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fill();
    ctx.fillStyle = "#fff";
    ctx.fillText(cell.count >= 1000 ? `${Math.round(cell.count / 100) / 10}k` : String(cell.count), x, y);
    targets.push({ x, y, r, kind: "cluster", item: cell });
  }
  let outlines = 0;
  ctx.strokeStyle = "#ff5d8f";
  ctx.lineWidth = 1.5;
  for (const d of map.points) {
    const corners = d.oriented ? d.oriented.corners : null;
    if (corners && corners.every(([lat, lon]) => Number.isFinite(lat) && Number.isFinite(lon))) {
      // an oriented detection: its rotated box as placed on the Earth
      ctx.beginPath();
      corners.forEach(([lat, lon], i) => {
        const [x, y] = project(lon, lat);
        if (i === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      });
      ctx.closePath();
      ctx.stroke();
      outlines += 1;
    }
    const [x, y] = project(d.longitude, d.latitude);
    ctx.fillStyle = "#ff5d8f";
    ctx.beginPath();
    ctx.arc(x, y, 4, 0, 2 * Math.PI);
    ctx.fill();
    targets.push({ x, y, r: 6, kind: "detection", item: d });
  }
  ctx.textAlign = "start";
  ctx.textBaseline = "alphabetic";
  map.drawnTargets = targets;

  const represented = map.clusters.reduce((n, c) => n + c.count, 0) + map.points.length;
  canvas.dataset.clusters = String(map.clusters.length);
  canvas.dataset.points = String(map.points.length);
  canvas.dataset.outlines = String(outlines);
  canvas.dataset.detections = String(represented);
  const [west, south, east, north] = visibleBox();
  $("map-info").textContent = `${fixed(south, 2)}…${fixed(north, 2)}°N ${fixed(west, 2)}…${fixed(east, 2)}°E · ` +
    (map.clusters.length ? `${represented} detections in ${map.clusters.length} clusters` : `${map.points.length} detections`);
}

/// Fetches what the view shows: the detections themselves when there are few enough, else
/// their counts in cells of CLUSTER_CELL_PX pixels.
async function loadMapDetections() {
  const serial = ++map.loadSerial;
  const cellDeg = Math.min(90, Math.max(0.001, CLUSTER_CELL_PX / map.view.scale));
  const bbox = visibleBox().map((v) => fixed(v, 5)).join(",");
  try {
    const cells = await api(`/api/detections/cells?cell_deg=${cellDeg}&bbox=${bbox}`);
    const inView = cells.reduce((n, c) => n + c.count, 0);
    let points = [];
    if (inView <= MAX_POINTS) points = await api(`/api/detections?bbox=${bbox}&limit=${MAX_POINTS}`);
    if (serial !== map.loadSerial) return;
    map.clusters = inView <= MAX_POINTS ? [] : cells;
    map.points = points;
    drawMap();
    map.canvas.dataset.loads = String(Number(map.canvas.dataset.loads || 0) + 1);
  } catch (e) {
    setStatus(e.message);
  }
}

let reloadTimer = null;
function viewChanged() {
  clampView();
  drawMap();
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(loadMapDetections, 150);
}

function zoomAt(x, y, factor) {
  const [lon, lat] = unproject(x, y);
  map.view.scale *= factor;
  clampView();
  // keep the point under the cursor where it was
  const [lon2, lat2] = unproject(x, y);
  map.view.lon += lon - lon2;
  map.view.lat += lat - lat2;
  viewChanged();
}

function zoomTo(lon, lat, scale) {
  map.view = { lon, lat, scale };
  viewChanged();
}

function setUpMap() {
  map.canvas = $("map");
  const canvas = map.canvas;
  let drag = null;
  canvas.addEventListener("mousedown", (e) => {
    drag = { x: e.clientX, y: e.clientY, lon: map.view.lon, lat: map.view.lat, moved: false };
  });
  window.addEventListener("mousemove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x;
    const dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    map.view.lon = drag.lon - dx / map.view.scale;
    map.view.lat = drag.lat + dy / map.view.scale;
    clampView();
    drawMap();
  });
  window.addEventListener("mouseup", () => {
    if (drag && drag.moved) viewChanged();
    setTimeout(() => { drag = null; }, 0);
  });
  canvas.addEventListener("click", (e) => {
    if (drag && drag.moved) return;
    const rect = canvas.getBoundingClientRect();
    const x = e.clientX - rect.left;
    const y = e.clientY - rect.top;
    const hit = map.drawnTargets.filter((t) => (t.x - x) ** 2 + (t.y - y) ** 2 <= t.r ** 2).pop();
    if (!hit) return;
    if (hit.kind === "cluster") zoomTo(hit.item.longitude, hit.item.latitude, map.view.scale * 4);
    else openChip(hit.item);
  });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const rect = canvas.getBoundingClientRect();
    zoomAt(e.clientX - rect.left, e.clientY - rect.top, e.deltaY < 0 ? 1.5 : 1 / 1.5);
  }, { passive: false });
  $("zoom-in").addEventListener("click", () => { const [w, h] = mapSize(); zoomAt(w / 2, h / 2, 2); });
  $("zoom-out").addEventListener("click", () => { const [w, h] = mapSize(); zoomAt(w / 2, h / 2, 0.5); });
  $("zoom-home").addEventListener("click", () => zoomTo(0, 20, mapSize()[0] / 360));
  window.addEventListener("resize", () => drawMap());
}

// ---------------------------------------------------------------------------------------------
// Detection gallery and the chip viewer

const gallery = { page: 0, total: 0 };

function chipUrl(d) {
  return `/api/chips/${d.frame_id}/${d.index}`;
}

async function loadGallery() {
  const total = state.detections;
  gallery.total = total;
  const pages = Math.max(1, Math.ceil(total / GALLERY_PAGE));
  gallery.page = Math.min(gallery.page, pages - 1);
  // newest first: page 0 is the end of the frame-time order
  const end = total - gallery.page * GALLERY_PAGE;
  const offset = Math.max(0, end - GALLERY_PAGE);
  const found = total ? await api(`/api/detections?offset=${offset}&limit=${end - offset}`) : [];
  found.reverse();
  const cards = found.map((d, i) => {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.index = String(i);
    card.innerHTML = `<img loading="lazy" alt="chip" src="${chipUrl(d)}">
      <div class="class">${escapeHtml(d.class_name)} ${fixed(d.score, 2)}</div>
      <div class="meta">${utc(d.frame_time_ms)}</div>
      <div class="meta">${fixed(d.latitude, 4)}, ${fixed(d.longitude, 4)}</div>`;
    card.querySelector("img").addEventListener("error", (e) => e.target.replaceWith(Object.assign(document.createElement("div"), { className: "nochip", textContent: "no chip downlinked" })), { once: true });
    card.addEventListener("click", () => openChip(d));
    return card;
  });
  $("gallery").replaceChildren(...cards);
  $("gallery-page").textContent = `page ${gallery.page + 1} of ${pages}`;
  $("detection-total").textContent = `${total} in the archive, newest first`;
  $("gallery-newer").disabled = gallery.page === 0;
  $("gallery-older").disabled = gallery.page >= pages - 1;
}

let chipShown = null;
function openChip(d) {
  chipShown = d;
  const image = $("chip-image");
  $("chip-missing").hidden = true;
  image.hidden = false;
  image.onerror = () => { image.hidden = true; $("chip-missing").hidden = false; };
  image.src = chipUrl(d);
  const rows = [
    ["Class", d.class_name], ["Score", fixed(d.score, 3)], ["Model", d.model], ["Frame", d.frame_id],
    ["Frame time", `${utc(d.frame_time_ms)} UTC`], ["Latitude", fixed(d.latitude, 5)], ["Longitude", fixed(d.longitude, 5)],
    ["Pixel box", d.pixel_box.map((v) => fixed(v, 0)).join(", ")], ["Product", d.product_id],
  ];
  if (d.oriented) {
    const [cx, cy, w, h, angle] = d.oriented.pixel;
    rows.splice(8, 0, ["Oriented box", `${fixed(w, 0)} x ${fixed(h, 0)} px at ${fixed(cx, 0)}, ${fixed(cy, 0)}, ${fixed((angle * 180) / Math.PI, 1)}°`]);
  }
  $("chip-details").innerHTML = rows.map(([k, v]) => `<dt>${k}</dt><dd>${escapeHtml(v)}</dd>`).join("");
  $("chip-dialog").showModal();
}

function setUpGallery() {
  $("gallery-newer").addEventListener("click", () => { gallery.page = Math.max(0, gallery.page - 1); loadGallery().catch((e) => setStatus(e.message)); });
  $("gallery-older").addEventListener("click", () => { gallery.page += 1; loadGallery().catch((e) => setStatus(e.message)); });
  $("chip-show").addEventListener("click", () => {
    if (chipShown) zoomTo(chipShown.longitude, chipShown.latitude, 8000);
  });
}

// ---------------------------------------------------------------------------------------------
// Telemetry plots

const PALETTE = ["#4fb3ff", "#ffd84f", "#ff5d8f", "#5fd38d", "#c792ea", "#ff9f43", "#7fe0ff"];

/// A line plot of named series [[t, v], ...] on a canvas, time along x.
function linePlot(container, id, title, series, unit) {
  let box = container.querySelector(`[data-plot="${id}"]`);
  if (!box) {
    box = document.createElement("div");
    box.className = "plot";
    box.dataset.plot = id;
    box.innerHTML = `<div>${escapeHtml(title)}</div><canvas></canvas><div class="legend"></div>`;
    container.appendChild(box);
  }
  const [ctx, w, h] = freshCanvas(box.querySelector("canvas"));
  const all = series.flatMap((s) => s.points);
  box.dataset.points = String(all.length);
  const legend = box.querySelector(".legend");
  if (!all.length) {
    ctx.fillStyle = "#8b98a6";
    ctx.fillText("no data yet", 10, h / 2);
    legend.textContent = "";
    return;
  }
  const t0 = Math.min(...all.map((p) => p[0]));
  const t1 = Math.max(...all.map((p) => p[0]), t0 + 1);
  let v0 = Math.min(...all.map((p) => p[1]));
  let v1 = Math.max(...all.map((p) => p[1]));
  if (v1 - v0 < 1e-9) { v0 -= 1; v1 += 1; }
  const pad = { l: 44, r: 8, t: 6, b: 18 };
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (w - pad.l - pad.r);
  const y = (v) => h - pad.b - ((v - v0) / (v1 - v0)) * (h - pad.t - pad.b);
  ctx.strokeStyle = "#2a3541";
  ctx.fillStyle = "#8b98a6";
  ctx.font = "10px system-ui";
  for (let i = 0; i <= 4; i++) {
    const v = v0 + ((v1 - v0) * i) / 4;
    ctx.beginPath();
    ctx.moveTo(pad.l, y(v));
    ctx.lineTo(w - pad.r, y(v));
    ctx.stroke();
    ctx.fillText(fixed(v, Math.abs(v1 - v0) < 10 ? 2 : 0), 2, y(v) + 3);
  }
  ctx.fillText(utc(t0).slice(11), pad.l, h - 4);
  ctx.textAlign = "end";
  ctx.fillText(utc(t1).slice(11), w - pad.r, h - 4);
  ctx.textAlign = "start";
  series.forEach((s, i) => {
    ctx.strokeStyle = PALETTE[i % PALETTE.length];
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    s.points.forEach(([t, v], j) => (j === 0 ? ctx.moveTo(x(t), y(v)) : ctx.lineTo(x(t), y(v))));
    ctx.stroke();
  });
  legend.innerHTML = series
    .map((s, i) => {
      const last = s.points.length ? `${fixed(s.points[s.points.length - 1][1], 2)}${unit}` : "–";
      return `<span style="color:${PALETTE[i % PALETTE.length]}">${escapeHtml(s.name)} ${last}</span>`;
    })
    .join("");
}

const MODES = ["NOMINAL", "THROTTLED", "SAFE"];

async function loadTelemetry() {
  const samples = await api("/api/telemetry?limit=720");
  const series = (name) => samples.filter((s) => name in s.values).map((s) => [s.time_ms, s.values[name]]);
  const names = new Set(samples.flatMap((s) => Object.keys(s.values)));
  const temperatures = [...names].filter((n) => n.startsWith("temperature_")).sort();
  const plots = $("plots");
  linePlot(plots, "temperatures", "Temperatures (°C)", temperatures.map((n) => ({ name: n.replace(/^temperature_|_c$/g, ""), points: series(n) })), " °C");
  linePlot(plots, "power", "Battery state of charge (%) and GPU duty (%)", [
    { name: "SoC", points: series("battery_soc").map(([t, v]) => [t, v * 100]) },
    { name: "GPU duty", points: series("gpu_duty").map(([t, v]) => [t, v * 100]) },
  ], " %");
  linePlot(plots, "queue", "Downlink queue and spool", [
    { name: "queue depth", points: series("queue_depth") },
    { name: "spool waiting", points: series("spool_waiting") },
  ], "");
  linePlot(plots, "processing", "Processing (totals)", [
    { name: "frames", points: series("frames") },
    { name: "detections", points: series("detections") },
    { name: "products acknowledged", points: series("products_acknowledged") },
  ], "");
  const latest = samples[samples.length - 1];
  if (latest) {
    state.spacecraftMs = latest.time_ms;
    $("clock").textContent = `${utc(latest.time_ms)} UTC`;
    const mode = MODES[latest.values.mode] || "–";
    $("mode").textContent = mode;
    $("mode").className = `mode ${mode}`;
  } else {
    $("clock").textContent = `${utc(state.spacecraftMs)} UTC (ground clock, no telemetry yet)`;
  }
}

// ---------------------------------------------------------------------------------------------
// Link status, passes, events

const linkHistory = new Map(); // station -> [[t, bytes, corrected, uncorrectable]]

async function loadStats() {
  const stats = await api("/api/stats");
  state.detections = stats.archive.detections;
  $("archive-counts").textContent = `${stats.archive.products} products, ${stats.archive.detections} detections`;
  const now = Date.now();
  const rows = stats.stations.map((s) => {
    const history = linkHistory.get(s.station) || [];
    history.push([now, s.bytes_received, s.link.rs_corrected_symbols, s.link.rs_uncorrectable]);
    linkHistory.set(s.station, history.slice(-600));
    const cells = [
      s.bytes_received, s.link.cadus, s.link.rs_corrected_symbols, s.link.rs_uncorrectable,
      s.link.authentication_failures, s.link.replayed_frames, s.ingest.products_stored, s.ingest.products_rejected, s.acknowledgements_sent,
    ];
    return `<tr><td>${escapeHtml(s.station)}</td><td class="${s.connected ? "yes" : "no"}">${s.connected ? "yes" : "no"}</td>${cells.map((c) => `<td class="num">${c}</td>`).join("")}</tr>`;
  });
  $("links").querySelector("tbody").innerHTML = rows.join("") || `<tr><td colspan="11">no station has connected</td></tr>`;
  const rate = [...linkHistory].map(([station, h]) => ({
    name: `${station} kbit/s`,
    points: h.slice(1).map((p, i) => [p[0], ((p[1] - h[i][1]) * 8) / Math.max(1, p[0] - h[i][0])]),
  }));
  linePlot($("link-plot"), "link-rate", "Received rate per station (kbit/s, since this page opened)", rate, "");
}

async function loadPasses() {
  const passes = await api(`/api/passes?from_ms=${state.spacecraftMs - 3600000}&to_ms=${state.spacecraftMs + 86400000}`);
  const canvas = $("passes");
  const [ctx, w, h] = freshCanvas(canvas);
  const stations = [...new Set(map.sites.map((s) => s.name).concat(passes.map((p) => p.station)))];
  const t0 = state.spacecraftMs - 3600000;
  const t1 = state.spacecraftMs + 86400000;
  const left = 70;
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (w - left - 6);
  const rowH = Math.max(12, (h - 16) / Math.max(1, stations.length));
  ctx.font = "11px system-ui";
  for (let hour = Math.ceil(t0 / 3600000); hour * 3600000 <= t1; hour += 3) {
    const t = hour * 3600000;
    ctx.fillStyle = "#2a3541";
    ctx.fillRect(x(t), 0, 1, h - 14);
    ctx.fillStyle = "#8b98a6";
    ctx.fillText(utc(t).slice(11, 16), x(t) - 12, h - 3);
  }
  stations.forEach((name, i) => {
    ctx.fillStyle = "#d8dee6";
    ctx.fillText(name, 2, i * rowH + rowH / 2 + 4);
    for (const p of passes.filter((p) => p.station === name)) {
      ctx.fillStyle = p.max_elevation_deg > 30 ? "#5fd38d" : "#3d8c5e";
      ctx.fillRect(x(p.aos_ms), i * rowH + 2, Math.max(2, x(p.los_ms) - x(p.aos_ms)), rowH - 4);
    }
  });
  ctx.fillStyle = "#ffd84f";
  ctx.fillRect(x(state.spacecraftMs), 0, 2, h - 14);
  canvas.dataset.passes = String(passes.length);
  $("pass-table").querySelector("tbody").innerHTML = passes
    .filter((p) => p.los_ms >= state.spacecraftMs)
    .slice(0, 8)
    .map((p) => `<tr><td>${escapeHtml(p.station)}</td><td>${utc(p.aos_ms)}</td><td>${utc(p.los_ms)}</td><td class="num">${fixed((p.los_ms - p.aos_ms) / 60000, 1)} min</td><td class="num">${fixed(p.max_elevation_deg, 1)}°</td></tr>`)
    .join("");
}

async function loadEvents() {
  const events = await api("/api/events?limit=200");
  $("events").querySelector("tbody").innerHTML = events
    .map((e) => `<tr class="sev-${e.severity}"><td>${utc(e.time_ms)}</td><td>${e.severity}</td><td>${escapeHtml(e.source)}</td><td>${escapeHtml(e.message)}</td></tr>`)
    .join("") || `<tr><td colspan="4">no events yet</td></tr>`;
}

async function loadFramesAndTrack() {
  const period = 100 * 60000;
  const [frames, track] = await Promise.all([
    api("/api/frames?limit=500"),
    api(`/api/track?from_ms=${state.spacecraftMs - period / 2}&to_ms=${state.spacecraftMs + period}&step_ms=20000`),
  ]);
  map.frames = frames;
  map.track = track;
  drawMap();
}

// ---------------------------------------------------------------------------------------------
// Commands

const FIELDS = {
  SetMode: () => `<label>Mode <select name="mode"><option>Nominal</option><option>Throttled</option><option>Safe</option></select></label>`,
  SetParameter: () => `<label>Name <input name="name" value="housekeeping_interval_s"></label><label>Value <input name="value" type="number" step="any" value="60"></label>`,
  Redownlink: () => `<label>Product id <input name="product_id" inputmode="numeric"></label>`,
  RequestTile: () => ["frame_id", "x", "y", "width", "height"].map((f) => `<label>${f} <input name="${f}" inputmode="numeric" size="8"></label>`).join(""),
  raw: () => `<label>Telecommand (JSON) <textarea name="json">{"SetMode": {"mode": "Safe"}}</textarea></label>`,
};

function commandFromForm() {
  const kind = $("command-kind").value;
  const field = (name) => $("command-fields").querySelector(`[name="${name}"]`).value.trim();
  const integer = (name) => {
    const text = field(name);
    if (!/^\d+$/.test(text)) throw new Error(`${name}: a whole number is needed, found "${text}"`);
    return Number(text);
  };
  switch (kind) {
    case "SetMode": return { SetMode: { mode: field("mode") } };
    case "SetParameter": {
      const value = Number(field("value"));
      if (!Number.isFinite(value)) throw new Error("value: a number is needed");
      return { SetParameter: { name: field("name"), value } };
    }
    case "Redownlink": return { Redownlink: { product_id: integer("product_id") } };
    case "RequestTile": return { RequestTile: Object.fromEntries(["frame_id", "x", "y", "width", "height"].map((f) => [f, integer(f)])) };
    default:
      try { return JSON.parse(field("json")); } catch (e) { throw new Error(`the JSON does not parse: ${e.message}`); }
  }
}

function operatorHeaders() {
  return { Authorization: `Bearer ${$("token").value.trim()}`, "X-Operator": $("operator").value.trim() || "operator" };
}

async function loadHistory() {
  const body = $("command-history").querySelector("tbody");
  if (!$("token").value.trim()) {
    body.innerHTML = `<tr><td colspan="5">enter the operator token to see the history</td></tr>`;
    return;
  }
  try {
    const entries = await api("/api/commands?limit=50", { headers: operatorHeaders() });
    body.innerHTML = entries
      .map((e) => `<tr><td>${e.id}</td><td>${utc(e.unix_ms)}</td><td>${escapeHtml(e.operator)}</td><td>${escapeHtml(e.command)}</td><td>${escapeHtml(e.outcome)}</td></tr>`)
      .join("") || `<tr><td colspan="5">no commands yet</td></tr>`;
  } catch (e) {
    body.innerHTML = `<tr><td colspan="5">${escapeHtml(e.status === 401 ? "the token is not the operator token" : e.message)}</td></tr>`;
  }
}

function setUpCommands() {
  const fields = () => { $("command-fields").innerHTML = FIELDS[$("command-kind").value](); };
  $("command-kind").addEventListener("change", fields);
  fields();
  $("token").value = sessionStorage.getItem("kestrel-token") || "";
  $("token").addEventListener("change", () => { sessionStorage.setItem("kestrel-token", $("token").value.trim()); loadHistory(); });
  $("command-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const result = $("command-result");
    result.className = "";
    let command;
    try {
      command = commandFromForm();
    } catch (error) {
      result.className = "error";
      result.textContent = error.message;
      return;
    }
    if (!$("token").value.trim()) {
      result.className = "error";
      result.textContent = "enter the operator token first";
      return;
    }
    result.textContent = "sending…";
    try {
      const sent = await api("/api/commands", {
        method: "POST",
        headers: { ...operatorHeaders(), "Content-Type": "application/json" },
        body: JSON.stringify({ command }),
      });
      result.className = "ok";
      result.textContent = sent.queued
        ? `command ${sent.id} queued: no station connected; it goes up at the next contact`
        : `command ${sent.id} sent through ${sent.stations} station(s)`;
    } catch (error) {
      result.className = "error";
      result.textContent = error.status === 401 ? "refused: the token is not the operator token" : error.message;
    }
    loadHistory();
  });
}

// ---------------------------------------------------------------------------------------------

const state = { spacecraftMs: Date.now(), detections: 0 };

async function refresh() {
  const jobs = [loadStats().then(() => (gallery.page === 0 ? loadGallery() : null)), loadTelemetry(), loadEvents(), loadHistory()];
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r) => r.status === "rejected");
  setStatus(failed ? failed.reason.message : "");
}

async function start() {
  setUpMap();
  setUpGallery();
  setUpCommands();
  try {
    const [topology, sites] = await Promise.all([api("/console/land-50m.json"), api("/api/sites").catch(() => [])]);
    map.land = topologyRings(topology);
    map.sites = sites;
  } catch (e) {
    setStatus(e.message);
  }
  map.view.scale = mapSize()[0] / 360;
  await refresh();
  await Promise.allSettled([loadFramesAndTrack(), loadPasses()]);
  drawMap();
  await loadMapDetections();
  document.body.dataset.ready = "1";
  let turns = 0;
  setInterval(async () => {
    await refresh();
    turns += 1;
    if (turns % 5 === 0) await Promise.allSettled([loadFramesAndTrack(), loadPasses(), loadMapDetections()]);
  }, REFRESH_MS);
}

// read-only hooks for tests and the curious: where the clickable marks are drawn
window.kestrelConsole = {
  targets: () => map.drawnTargets.map(({ x, y, r, kind }) => ({ x, y, r, kind })),
  view: () => ({ ...map.view }),
};

start();
