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
// Telemetry plots, with the dictionary's limits

const PALETTE = ["#4fb3ff", "#ffd84f", "#ff5d8f", "#5fd38d", "#c792ea", "#ff9f43", "#7fe0ff"];
const LIMIT_COLOURS = { warning: "#ffb347", alarm: "#ff6b6b" };

/// How a value stands against a channel's limits (as the dictionary's `Channel::level`).
function level(channel, value) {
  const outside = (range) => range && ((range.low !== null && value < range.low) || (range.high !== null && value > range.high));
  if (outside(channel.alarm)) return "alarm";
  if (outside(channel.warning)) return "warning";
  return "nominal";
}

/// The finite limit lines of a channel: [{value, kind}].
function limitLines(channel) {
  if (!channel) return [];
  return ["warning", "alarm"].flatMap((kind) => {
    const range = channel[kind];
    return range ? [range.low, range.high].filter((v) => v !== null).map((value) => ({ value, kind })) : [];
  });
}

/// A line plot of named series [[t, v], ...] on a canvas, time along x; `channel`, when given,
/// adds its limit lines and marks the points outside them.
function linePlot(container, id, title, series, unit, channel = null) {
  let box = container.querySelector(`[data-plot="${id}"]`);
  if (!box) {
    box = document.createElement("div");
    box.className = "plot";
    box.dataset.plot = id;
    box.innerHTML = `<div class="title"></div><canvas></canvas><div class="legend"></div>`;
    container.appendChild(box);
  }
  box.querySelector(".title").textContent = title;
  const [ctx, w, h] = freshCanvas(box.querySelector("canvas"));
  const all = series.flatMap((s) => s.points);
  const lines = limitLines(channel);
  box.dataset.points = String(all.length);
  box.dataset.limits = String(lines.length);
  const legend = box.querySelector(".legend");
  if (!all.length) {
    ctx.fillStyle = "#8b98a6";
    ctx.fillText("no data yet", 10, h / 2);
    legend.textContent = "";
    box.dataset.outside = "0";
    return;
  }
  const t0 = Math.min(...all.map((p) => p[0]));
  const t1 = Math.max(...all.map((p) => p[0]), t0 + 1);
  const shown = all.map((p) => p[1]).concat(lines.map((l) => l.value));
  let v0 = Math.min(...shown);
  let v1 = Math.max(...shown);
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
  ctx.setLineDash([4, 3]);
  for (const line of lines) {
    ctx.strokeStyle = LIMIT_COLOURS[line.kind];
    ctx.beginPath();
    ctx.moveTo(pad.l, y(line.value));
    ctx.lineTo(w - pad.r, y(line.value));
    ctx.stroke();
  }
  ctx.setLineDash([]);
  let outside = 0;
  series.forEach((s, i) => {
    ctx.strokeStyle = PALETTE[i % PALETTE.length];
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    s.points.forEach(([t, v], j) => (j === 0 ? ctx.moveTo(x(t), y(v)) : ctx.lineTo(x(t), y(v))));
    ctx.stroke();
    if (!channel) return;
    for (const [t, v] of s.points) {
      const where = level(channel, v);
      if (where === "nominal") continue;
      outside += 1;
      ctx.fillStyle = LIMIT_COLOURS[where];
      ctx.beginPath();
      ctx.arc(x(t), y(v), 3, 0, 2 * Math.PI);
      ctx.fill();
    }
  });
  box.dataset.outside = String(outside);
  legend.innerHTML = series
    .map((s, i) => {
      const last = s.points.length ? `${fixed(s.points[s.points.length - 1][1], 2)} ${unit}` : "–";
      return `<span style="color:${PALETTE[i % PALETTE.length]}">${escapeHtml(s.name)} ${escapeHtml(last)}</span>`;
    })
    .join("");
}

const MODES = ["NOMINAL", "THROTTLED", "SAFE"];

/// Alarms the operator acknowledged, as "channel@level@since_ms" (kept in this browser).
const acknowledged = new Set(JSON.parse(localStorage.getItem("kestrel-acknowledged") || "[]"));

/// Each limited channel's latest value and how it stands: since when it has been out of its
/// limits (the first sample of the excursion still under way), and whether that was acknowledged.
function channelStates(samples) {
  return (state.dictionary ? state.dictionary.channels : [])
    .filter((channel) => channel.warning || channel.alarm)
    .map((channel) => {
      const values = samples.filter((s) => channel.name in s.values).map((s) => [s.time_ms, s.values[channel.name]]);
      if (!values.length) return { channel, latest: null, level: "nominal" };
      const [, latest] = values[values.length - 1];
      const where = level(channel, latest);
      // the excursion at this level or worse began here: a warning that rises to an alarm is a new
      // alarm; one that began before the samples in view keeps one key until it ends
      const worst = (v) => (where === "alarm" ? level(channel, v) === "alarm" : level(channel, v) !== "nominal");
      let since = values.length - 1;
      while (since > 0 && worst(values[since - 1][1])) since -= 1;
      const sinceMs = values[since][0];
      const key = `${channel.name}@${where}@${since === 0 ? "before-the-samples-in-view" : sinceMs}`;
      return { channel, latest, level: where, sinceMs, key, acknowledged: acknowledged.has(key) };
    });
}

function range(r) {
  if (!r) return "–";
  return `${r.low === null ? "" : r.low} … ${r.high === null ? "" : r.high}`;
}

function showAlarms(states) {
  const out = states.filter((s) => s.level !== "nominal");
  const open = out.filter((s) => !s.acknowledged);
  const button = $("alarm-count");
  button.dataset.alarms = String(out.length);
  button.dataset.unacknowledged = String(open.length);
  button.textContent = out.length ? `${out.length} alarm${out.length === 1 ? "" : "s"}, ${open.length} unacknowledged` : "no alarms";
  button.className = `alarms ${open.some((s) => s.level === "alarm") ? "alarm" : open.length ? "warning" : ""}`;
  $("limits").querySelector("tbody").innerHTML = states
    .map((s) => {
      const unit = s.channel.unit;
      const latest = s.latest === null ? "–" : `${fixed(s.latest, 2)} ${unit}`;
      const action = s.level === "nominal" ? "" : s.acknowledged ? "acknowledged" : `<button data-acknowledge="${escapeHtml(s.key)}">Acknowledge</button>`;
      return `<tr class="level-${s.level}" data-channel="${escapeHtml(s.channel.name)}"><td>${escapeHtml(s.channel.name)}</td><td class="num">${escapeHtml(latest)}</td>` +
        `<td>${range(s.channel.warning)}</td><td>${range(s.channel.alarm)}</td><td>${s.level}</td>` +
        `<td>${s.level === "nominal" ? "" : utc(s.sinceMs)}</td><td>${action}</td></tr>`;
    })
    .join("") || `<tr><td colspan="7">the dictionary has not loaded</td></tr>`;
}

function setUpAlarms() {
  $("limits").addEventListener("click", (e) => {
    const key = e.target.dataset.acknowledge;
    if (!key) return;
    acknowledged.add(key);
    localStorage.setItem("kestrel-acknowledged", JSON.stringify([...acknowledged].slice(-500)));
    showAlarms(channelStates(state.samples));
  });
  $("alarm-count").addEventListener("click", () => $("limits").scrollIntoView({ block: "center" }));
}

async function loadTelemetry() {
  const samples = await api("/api/telemetry?limit=720");
  state.samples = samples;
  const series = (name) => samples.filter((s) => name in s.values).map((s) => [s.time_ms, s.values[name]]);
  const channels = new Map((state.dictionary ? state.dictionary.channels : []).map((c) => [c.name, c]));
  const names = new Set(samples.flatMap((s) => Object.keys(s.values)));
  const plots = $("plots");
  // every channel with limits has its own plot, its limit lines drawn
  const limited = [...channels.values()].filter((c) => c.warning || c.alarm);
  for (const channel of limited) {
    linePlot(plots, channel.name, `${channel.description} (${channel.unit})`, [{ name: channel.name, points: series(channel.name) }], channel.unit, channel);
  }
  const unlimited = (list) => list.filter((n) => !limited.some((c) => c.name === n));
  const temperatures = unlimited([...names].filter((n) => n.startsWith("temperature_")).sort());
  if (temperatures.length) {
    linePlot(plots, "temperatures", "Other temperatures (°C)", temperatures.map((n) => ({ name: n.replace(/^temperature_|_c$/g, ""), points: series(n) })), "°C");
  }
  linePlot(plots, "duty", "GPU duty (fraction)", [{ name: "GPU duty", points: series("gpu_duty") }], "");
  linePlot(plots, "queue", "Downlink queue and spool", [
    { name: "queue depth", points: series("queue_depth") },
    { name: "spool waiting", points: series("spool_waiting") },
  ], "");
  linePlot(plots, "processing", "Processing (totals)", [
    { name: "frames", points: series("frames") },
    { name: "detections", points: series("detections") },
    { name: "products acknowledged", points: series("products_acknowledged") },
  ], "");
  showAlarms(channelStates(samples));
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

const SEVERITY_RANK = { Info: 0, Warning: 1, Error: 2 };
/// Events read per refresh with a filter set; the filters choose among these.
const EVENTS_READ = 1000;
const EVENTS_SHOWN = 200;

async function loadEvents() {
  const sources = $("event-source");
  const filtered = sources.value !== "" || $("event-severity").value !== "Info";
  // the ground decodes and verifies each event it answers with: more only when they are filtered
  const events = await api(`/api/events?limit=${filtered ? EVENTS_READ : EVENTS_SHOWN}`);
  const known = new Set([...sources.options].map((o) => o.value));
  const named = (state.dictionary ? state.dictionary.events.map((e) => e.name) : []).concat(events.map((e) => e.source));
  for (const source of named) {
    if (known.has(source)) continue;
    known.add(source);
    sources.add(new Option(source, source));
  }
  const atLeast = SEVERITY_RANK[$("event-severity").value];
  const source = sources.value;
  const chosen = events.filter((e) => SEVERITY_RANK[e.severity] >= atLeast && (!source || e.source === source));
  $("event-shown").textContent = `${Math.min(chosen.length, EVENTS_SHOWN)} of the latest ${events.length} events`;
  $("events").querySelector("tbody").innerHTML = chosen
    .slice(0, EVENTS_SHOWN)
    .map((e) => `<tr class="sev-${e.severity}" data-source="${escapeHtml(e.source)}" data-severity="${e.severity}"><td>${utc(e.time_ms)}</td><td>${e.severity}</td><td>${escapeHtml(e.source)}</td><td>${escapeHtml(e.message)}</td></tr>`)
    .join("") || `<tr><td colspan="4">no events ${events.length ? "match the filters" : "yet"}</td></tr>`;
}

function setUpEvents() {
  const reload = () => loadEvents().catch((e) => setStatus(e.message));
  $("event-severity").addEventListener("change", reload);
  $("event-source").addEventListener("change", reload);
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
// Commands: forms made from the mission dictionary, hazardous ones confirmed, each command's
// stages followed live.

/// JSON text kept as it was written: a 64-bit id typed by the operator, or a telecommand typed as
/// JSON, goes up digit for digit (a JavaScript number would round it past 2^53).
class Verbatim {
  constructor(text) { this.text = text; }
}

/// JSON text of `value`, `Verbatim` parts as they are.
function jsonText(value) {
  if (value instanceof Verbatim) return value.text;
  if (Array.isArray(value)) return `[${value.map(jsonText).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${jsonText(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

const RAW = "raw";
const telecommand = (name) => state.dictionary.telecommands.find((t) => t.name === name);
const parameter = (name) => state.dictionary.parameters.find((p) => p.name === name);

const hazardNote = (spec) => ({ always: " (hazardous)", when_contained: " (hazardous when a command in it is)" })[spec.hazard.when] || "";

/// The input for one argument of a telecommand, as the dictionary types it.
function argumentField(spec, argument) {
  const name = escapeHtml(argument.name);
  const label = (inner) => `<label title="${escapeHtml(argument.description)}">${name} ${inner}</label>`;
  switch (argument.type) {
    case "enumeration": {
      if (!argument.values.length) return label(`<input name="${name}">`);
      const hazardous = (value) => spec.hazard.when === "when_argument" && spec.hazard.argument === argument.name && spec.hazard.value === value;
      const options = argument.values.map((v) => `<option value="${escapeHtml(v)}">${escapeHtml(v)}${hazardous(v) ? " (hazardous)" : ""}</option>`);
      return label(`<select name="${name}">${options.join("")}</select>`);
    }
    case "parameter_name": {
      const options = state.dictionary.parameters.map((p) => `<option value="${escapeHtml(p.name)}">${escapeHtml(p.name)}${p.unit ? ` (${escapeHtml(p.unit)})` : ""}</option>`);
      return label(`<select name="${name}" data-parameter-name>${options.join("")}</select>`);
    }
    case "real": return label(`<input name="${name}" type="number" step="any" size="10">`);
    case "unsigned": return label(`<input name="${name}" inputmode="numeric" size="${argument.bits > 32 ? 22 : 10}" placeholder="0 to 2^${argument.bits} - 1">`);
    case "time_ms": return label(`<input name="${name}" inputmode="numeric" size="15" placeholder="Unix ms">`);
    case "bytes": return label(`<input name="${name}" size="40" placeholder="${argument.len === null ? "" : `${argument.len} `}bytes in hex">`);
    default: return label(`<textarea name="${name}" placeholder='[[1773964800000, {"SetMode": {"mode": "Throttled"}}]]'></textarea>`);
  }
}

/// The value of one argument from its input, checked as the dictionary types it.
function argumentValue(spec, argument, element) {
  const text = element.value.trim();
  const refuse = (what) => { throw new Error(`${spec.name}.${argument.name}: ${what}, found "${text}"`); };
  switch (argument.type) {
    case "enumeration":
    case "parameter_name":
      if (!text) refuse("a value is needed");
      return text;
    case "real": {
      const value = Number(text);
      if (!text || !Number.isFinite(value)) refuse("a number is needed");
      const named = $("command-fields").querySelector("[data-parameter-name]");
      const p = named && parameter(named.value);
      if (p && (value < p.min || value > p.max)) refuse(`${p.name} takes ${p.min} to ${p.max}${p.unit ? ` ${p.unit}` : ""}`);
      if (p && p.value_type === "integer" && !Number.isInteger(value)) refuse(`${p.name} takes whole numbers`);
      return value;
    }
    case "unsigned": {
      if (!/^\d+$/.test(text)) refuse("a whole number of decimal digits is needed");
      const value = BigInt(text);
      if (value >= 2n ** BigInt(argument.bits)) refuse(`at most 2^${argument.bits} - 1 (${2n ** BigInt(argument.bits) - 1n})`);
      return new Verbatim(value.toString());
    }
    case "time_ms":
      if (!/^-?\d{1,16}$/.test(text)) refuse("Unix milliseconds are needed");
      return new Verbatim(BigInt(text).toString());
    case "bytes": {
      const digits = argument.len === null ? "+" : `{${2 * argument.len}}`;
      if (!new RegExp(`^([0-9a-fA-F]{2})${digits}$`).test(text)) refuse(`${argument.len === null ? "" : `${argument.len} `}bytes in hex are needed`);
      return text.match(/../g).map((pair) => parseInt(pair, 16));
    }
    default:
      try { JSON.parse(text); } catch (e) { refuse(`JSON is needed (${e.message})`); }
      return new Verbatim(text);
  }
}

/// The chosen command as JSON text, ready for `POST /api/commands`.
function commandFromForm() {
  const kind = $("command-kind").value;
  const field = (name) => $("command-fields").querySelector(`[name="${name}"]`);
  if (kind === RAW) {
    const text = field("json").value.trim();
    try { JSON.parse(text); } catch (e) { throw new Error(`the JSON does not parse: ${e.message}`); }
    return text;
  }
  const spec = telecommand(kind);
  const args = Object.fromEntries(spec.arguments.map((a) => [a.name, argumentValue(spec, a, field(a.name))]));
  return jsonText({ [kind]: args });
}

function showParameterHelp() {
  const named = $("command-fields").querySelector("[data-parameter-name]");
  const help = $("command-help");
  const spec = telecommand($("command-kind").value);
  help.textContent = spec ? spec.description + hazardNote(spec) : "a telecommand as the API takes it (docs/ICD.md)";
  if (!named) return;
  const p = parameter(named.value);
  const value = $("command-fields").querySelector('[name="value"]');
  value.min = p.min;
  value.max = p.max;
  value.step = p.value_type === "integer" ? "1" : "any";
  const initial = "value" in p.default ? `default ${p.default.value}` : `default from mission.toml ${p.default.mission_key}`;
  help.textContent = `${p.name}: ${p.description}; ${p.min} to ${p.max}${p.unit ? ` ${p.unit}` : ""} (${initial})`;
}

function showCommandFields() {
  const kind = $("command-kind").value;
  const fields = $("command-fields");
  if (kind === RAW) {
    fields.innerHTML = `<label>Telecommand (JSON) <textarea name="json">{"SetMode": {"mode": "Throttled"}}</textarea></label>`;
  } else {
    const spec = telecommand(kind);
    fields.innerHTML = spec.arguments.map((a) => argumentField(spec, a)).join("");
  }
  showParameterHelp();
}

function operatorHeaders() {
  return { Authorization: `Bearer ${$("token").value.trim()}` };
}

// ---- each command's life

/// Commands followed, newest first: id (the decimal digits) -> its life, or null before it loads.
const tracked = new Map();
const MAX_TRACKED = 12;
const STAGES_MS = 1000;
// not `timed_out`: a report that comes late still shows
const FINAL_STAGES = new Set(["cancelled", "not_sent", "refused", "failed"]);

/// How many commands a time-tagged sequence holds (each reports when its time comes), else 0.
function tagged(life) {
  try {
    const sequence = JSON.parse(life.command).TimeTagged;
    return sequence ? sequence.commands.length : 0;
  } catch {
    return 0;
  }
}

function finished(life) {
  if (!life || life.stages.some((s) => FINAL_STAGES.has(s.stage))) return Boolean(life);
  const ran = life.stages.filter((s) => s.stage === "completed" || s.stage === "failed");
  const own = ran.some((s) => s.tagged_at === null);
  return own && ran.filter((s) => s.tagged_at !== null).length >= tagged(life);
}

/// Follows command `id` (again from its start when `afresh`).
function track(id, afresh = false) {
  const key = String(id);
  if (tracked.has(key) && !afresh) return;
  tracked.delete(key);
  tracked.set(key, null);
  while (tracked.size > MAX_TRACKED) tracked.delete(tracked.keys().next().value);
  loadStages();
}

function stageText(s) {
  switch (s.stage) {
    case "submitted": return "submitted";
    case "awaiting_confirmation": return "awaiting confirmation (hazardous)";
    case "confirmed": return `confirmed by ${s.by}`;
    case "queued": return "queued: goes up at the next contact";
    case "released": return `released through ${s.stations} station(s), ARSN ${s.first_arsn} to ${s.last_arsn}`;
    case "cancelled": return `cancelled by ${s.by}`;
    case "not_sent": return `not sent: ${s.reason}`;
    case "accepted": return "accepted on board";
    case "refused": return `refused on board: ${s.reason}`;
    case "completed": return `completed: ${s.detail}`;
    case "failed": return `failed on board: ${s.reason}`;
    case "timed_out": return `timed out: no report in ${s.contacts} contacts since release`;
    default: return s.stage;
  }
}

/// A link to the product a completed command made (a requested tile), when its detail names one.
function productLink(s) {
  const made = s.stage === "completed" && /queued as product (\d+)/.exec(s.detail);
  return made ? ` <a href="/api/products/${made[1]}/image" target="_blank">open the tile</a>` : "";
}

function stageTime(s) {
  if ("unix_ms" in s) return `${utc(s.unix_ms)} ground`;
  if ("spacecraft_ms" in s) return `${utc(s.spacecraft_ms)} spacecraft${s.tagged_at !== null ? `, tagged ${utc(s.tagged_at)}` : ""}`;
  return "";
}

function showStages() {
  const cards = [...tracked].reverse().map(([id, life]) => {
    if (!life) return `<div class="command-life" data-id="${id}">command ${id}: loading…</div>`;
    const last = life.stages[life.stages.length - 1].stage;
    const actions = last === "awaiting_confirmation"
      ? `<button data-confirm="${id}">Confirm</button> <button data-cancel="${id}">Cancel</button>`
      : last === "queued" ? `<button data-cancel="${id}">Cancel</button>` : "";
    const stages = life.stages
      .map((s) => `<li class="stage-${s.stage}"><span class="when">${stageTime(s)}</span> ${escapeHtml(stageText(s))}${productLink(s)}</li>`)
      .join("");
    return `<div class="command-life ${finished(life) ? "done" : "live"}" data-id="${id}" data-stages="${life.stages.map((s) => s.stage).join(" ")}">` +
      `<div><b>command ${id}</b> by ${escapeHtml(life.operator)} <code>${escapeHtml(life.command)}</code> ${actions}</div><ol>${stages}</ol></div>`;
  });
  $("command-stages").innerHTML = cards.join("") || `<p class="muted">no command followed yet</p>`;
}

let stagesLoading = false;
async function loadStages() {
  if (stagesLoading || !$("token").value.trim()) return;
  stagesLoading = true;
  try {
    for (const [id, life] of tracked) {
      if (finished(life)) continue;
      try {
        tracked.set(id, await api(`/api/commands/${id}`, { headers: operatorHeaders() }));
      } catch (e) {
        if (e.status === 404) tracked.delete(id);
        else throw e;
      }
    }
    showStages();
  } catch (e) {
    setStatus(e.message);
  } finally {
    stagesLoading = false;
  }
}

async function loadHistory() {
  const body = $("command-history").querySelector("tbody");
  if (!$("token").value.trim()) {
    body.innerHTML = `<tr><td colspan="5">enter the operator token to see the history</td></tr>`;
    return;
  }
  try {
    const [entries, awaiting, queued] = await Promise.all(
      ["/api/commands?limit=50", "/api/commands/awaiting", "/api/commands/queue"].map((path) => api(path, { headers: operatorHeaders() })),
    );
    // what waits on an operator is followed without being asked for
    for (const entry of awaiting.concat(queued)) track(entry.id);
    body.innerHTML = entries
      .map((e) => {
        const about = /^command (\d+):/.exec(e.outcome);
        const command = about ? about[1] : String(e.id);
        return `<tr data-command="${command}" title="show command ${command}'s stages"><td>${e.id}</td><td>${utc(e.unix_ms)}</td><td>${escapeHtml(e.operator)}</td><td>${escapeHtml(e.command)}</td><td>${escapeHtml(e.outcome)}</td></tr>`;
      })
      .join("") || `<tr><td colspan="5">no commands yet</td></tr>`;
  } catch (e) {
    body.innerHTML = `<tr><td colspan="5">${escapeHtml(e.status === 401 ? "the token is not an operator's token" : e.message)}</td></tr>`;
  }
}

function showResult(kind, message) {
  const result = $("command-result");
  result.className = kind;
  result.textContent = message;
}

function released(sent) {
  if (sent.awaiting_confirmation) return `command ${sent.id} is hazardous: it waits for your confirmation`;
  if (sent.queued) return `command ${sent.id} queued: no station connected; it goes up at the next contact`;
  return `command ${sent.id} sent through ${sent.stations} station(s)`;
}

const refusal = (error) => (error.status === 401 ? "refused: the token is not an operator's token" : `refused: ${error.message}`);

async function confirmCommand(id) {
  try {
    const sent = await api(`/api/commands/${id}/confirm`, { method: "POST", headers: operatorHeaders() });
    showResult("ok", `confirmed: ${released(sent)}`);
  } catch (error) {
    showResult("error", refusal(error));
  }
  tracked.set(String(id), null);
  await Promise.all([loadStages(), loadHistory()]);
}

async function cancelCommand(id) {
  try {
    await api(`/api/commands/${id}`, { method: "DELETE", headers: operatorHeaders() });
    showResult("ok", `command ${id} cancelled: it will never be sent`);
  } catch (error) {
    showResult("error", refusal(error));
  }
  tracked.set(String(id), null);
  await Promise.all([loadStages(), loadHistory()]);
}

function askConfirmation(id, text) {
  const dialog = $("confirm-dialog");
  dialog.dataset.id = String(id);
  $("confirm-command").textContent = `command ${id}: ${text}`;
  dialog.showModal();
}

function setUpCommands() {
  const kinds = state.dictionary.telecommands.map((t) => new Option(`${t.name}${hazardNote(t)}`, t.name));
  $("command-kind").replaceChildren(...kinds, new Option("Telecommand as JSON", RAW));
  $("command-kind").addEventListener("change", showCommandFields);
  $("command-fields").addEventListener("change", (e) => { if (e.target.matches("[data-parameter-name]")) showParameterHelp(); });
  showCommandFields();
  $("token").value = sessionStorage.getItem("kestrel-token") || "";
  $("token").addEventListener("change", () => { sessionStorage.setItem("kestrel-token", $("token").value.trim()); loadHistory(); loadStages(); });
  $("command-history").addEventListener("click", (e) => {
    const row = e.target.closest("tr[data-command]");
    if (row) track(row.dataset.command, true);
  });
  $("command-stages").addEventListener("click", (e) => {
    if (e.target.dataset.confirm) confirmCommand(e.target.dataset.confirm);
    if (e.target.dataset.cancel) cancelCommand(e.target.dataset.cancel);
  });
  $("confirm-send").addEventListener("click", () => confirmCommand($("confirm-dialog").dataset.id));
  $("confirm-cancel").addEventListener("click", () => cancelCommand($("confirm-dialog").dataset.id));
  $("command-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    let text;
    try {
      text = commandFromForm();
    } catch (error) {
      showResult("error", error.message);
      return;
    }
    if (!$("token").value.trim()) {
      showResult("error", "enter the operator token first");
      return;
    }
    showResult("", "sending…");
    try {
      const sent = await api("/api/commands", {
        method: "POST",
        headers: { ...operatorHeaders(), "Content-Type": "application/json" },
        body: `{"command":${text}}`,
      });
      showResult("ok", released(sent));
      track(sent.id);
      if (sent.awaiting_confirmation) askConfirmation(sent.id, text);
    } catch (error) {
      showResult("error", refusal(error));
    }
    loadHistory();
  });
  setInterval(loadStages, STAGES_MS);
}

// ---------------------------------------------------------------------------------------------

const state = { spacecraftMs: Date.now(), detections: 0, dictionary: null, samples: [] };

async function refresh() {
  const jobs = [loadStats().then(() => (gallery.page === 0 ? loadGallery() : null)), loadTelemetry(), loadEvents(), loadHistory()];
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r) => r.status === "rejected");
  setStatus(failed ? failed.reason.message : "");
}

async function start() {
  setUpMap();
  setUpGallery();
  setUpAlarms();
  setUpEvents();
  try {
    state.dictionary = await api("/api/dictionary");
  } catch (e) {
    // without its dictionary the console cannot make command forms nor judge limits
    setStatus(`the mission dictionary did not load: ${e.message}`);
    state.dictionary = { mission: "", parameters: [], telecommands: [], channels: [], events: [] };
  }
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
