// The review page: inputs -> detect-faces job -> lanes per person -> choose -> lipsync job -> compare.
// Plain browser JavaScript, no build step; it talks to the same server's JSON API.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"];
const FIELD_RE = /\b((?:faces|characters)\[\d+\](?:\.[a-z_]+)?|video_url|audio_url|upload_url|webhook_url|sample_fps|similarity_threshold|sync_mode|fidelity_weight|enhance_quality)\b/;

const state = {
  inputs: { video: { url: null, pending: null, preview: null }, audio: { url: null, pending: null } },
  detection: null, // the detect-faces result
  people: [], // {id, color, samples: [{t, face}], ranges: [{start, end}], ticked, lane}
  durationMs: 0,
  stepMs: 333,
  job: null, // {id, source} of the running job
  rangeRows: [], // faces[i] of the last lipsync request -> its range row element
};

class ApiError extends Error {
  constructor(payload, status) {
    super(payload.error_message || payload.error || `HTTP ${status}`);
    this.payload = payload;
    this.status = status;
  }
}

// ------------------------------------------------------------------ errors next to their fields

function fieldElement(name) {
  const exact = document.querySelector(`[data-field="${CSS.escape(name)}"]`);
  if (exact) return exact;
  const base = name.split(".")[0];
  return base !== name ? document.querySelector(`[data-field="${CSS.escape(base)}"]`) : null;
}

function setFieldError(name, message) {
  const element = fieldElement(name);
  if (!element) return false;
  element.classList.add("invalid");
  $(".error", element).textContent = message;
  return true;
}

function clearErrors(root = document) {
  for (const element of root.querySelectorAll(".invalid")) element.classList.remove("invalid");
  for (const element of root.querySelectorAll(".error")) element.textContent = "";
}

// Show an API error beside the field it names, else in `fallback`.
function showApiError(error, fallback) {
  const message = error.message || String(error);
  const payload = error.payload || {};
  let name = payload.field || (message.match(FIELD_RE) || [])[1];
  const character = message.match(/character '([^']+)'/);
  if (!name && character) {
    const index = characterRows().findIndex((row) => $(".char-id", row).value.trim() === character[1]);
    if (index >= 0) name = `characters[${index}]`;
  }
  if (name && name.startsWith("faces[")) {
    const row = state.rangeRows[Number(name.match(/\d+/)[0])];
    if (row) {
      row.classList.add("invalid");
      $(".error", row).textContent = message;
      return;
    }
  }
  if (name && setFieldError(name, message)) return;
  fallback.textContent = message;
}

// ------------------------------------------------------------------ inputs and uploads

function humanBytes(n) {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} KB`;
}

// POST a local file to /uploads; resolves to its upload:// URL. Progress goes to `status`.
function uploadFile(file, kind, status) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/uploads?kind=${kind}&name=${encodeURIComponent(file.name)}`);
    xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) status.textContent = `uploading ${Math.round((100 * event.loaded) / event.total)}%`;
    };
    xhr.onerror = () => reject(new ApiError({ error_message: `uploading ${file.name} failed: the connection broke` }, 0));
    xhr.onload = () => {
      let payload;
      try {
        payload = JSON.parse(xhr.responseText);
      } catch {
        payload = { error_message: `uploading ${file.name} failed (HTTP ${xhr.status})` };
      }
      if (xhr.status !== 201) {
        reject(new ApiError(payload, xhr.status));
        return;
      }
      const until = new Date(payload.expires_at * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      status.textContent = `uploaded ${humanBytes(payload.size_bytes)}, usable until ${until}`;
      status.dataset.url = payload.url;
      resolve(payload.url);
    };
    status.textContent = "uploading…";
    xhr.send(file);
  });
}

// One "URL or file" input: a chosen file is uploaded at once; typing a URL forgets the file.
function wireInput(field, kind, urlInput, fileInput, slot, onPreview) {
  const status = $(".status", field);
  urlInput.addEventListener("input", () => {
    fileInput.value = "";
    slot.pending = null;
    status.textContent = "";
    if (onPreview) onPreview(urlInput.value.trim() || null);
  });
  fileInput.addEventListener("change", () => {
    const file = fileInput.files[0];
    clearErrors(field);
    if (!file) return;
    urlInput.value = "";
    if (onPreview) onPreview(URL.createObjectURL(file));
    slot.pending = uploadFile(file, kind, status);
    slot.pending.catch((error) => {
      status.textContent = "";
      field.classList.add("invalid");
      $(".error", field).textContent = error.message;
    });
  });
  return async () => {
    if (slot.pending) return slot.pending;
    return urlInput.value.trim() || null;
  };
}

const videoSlot = state.inputs.video;
const videoUrlOf = wireInput(fieldElement("video_url"), "video", $("#video-url"), $("#video-file"), videoSlot,
  (src) => { videoSlot.preview = src; });
const audioUrlOf = wireInput(fieldElement("audio_url"), "audio", $("#audio-url"), $("#audio-file"), state.inputs.audio);

function characterRows() {
  return [...document.querySelectorAll("#character-rows .character")];
}

function renumberCharacters() {
  characterRows().forEach((row, index) => { row.dataset.field = `characters[${index}]`; });
}

function addCharacter() {
  const row = $("#character-row").content.firstElementChild.cloneNode(true);
  const slot = { pending: null };
  row.urlOf = wireInput(row, "image", $(".char-url", row), $(".char-file", row), slot);
  $(".remove", row).addEventListener("click", () => { row.remove(); renumberCharacters(); });
  $("#character-rows").append(row);
  renumberCharacters();
  $(".char-id", row).value = `character_${characterRows().length}`;
  return row;
}

$("#add-character").addEventListener("click", addCharacter);

// ------------------------------------------------------------------ jobs: submit, follow SSE, cancel

function setProgress(element, percent, text) {
  element.hidden = false;
  $(".bar", element).style.width = `${Math.max(0, Math.min(100, percent))}%`;
  $(".label", element).textContent = text;
}

async function submitJob(kind, body) {
  const response = await fetch(`/jobs/${kind}`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const payload = await response.json().catch(() => ({ error_message: `HTTP ${response.status}` }));
  if (response.status !== 202) throw new ApiError(payload, response.status);
  return payload;
}

async function pollJob(jobId) {
  for (;;) {
    const response = await fetch(`/jobs/${jobId}`);
    const record = await response.json();
    if (!response.ok) throw new ApiError(record, response.status);
    if (["succeeded", "failed", "cancelled"].includes(record.state)) return record;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

// Run a job and follow its Server-Sent Events; resolves to the final record.
async function runJob(kind, body, progress) {
  const submitted = await submitJob(kind, body);
  setProgress(progress, 0, "queued");
  return new Promise((resolve, reject) => {
    const source = new EventSource(submitted.events_url);
    state.job = { id: submitted.job_id, source };
    const finish = (record) => { source.close(); state.job = null; refreshHealth(); resolve(record); };
    source.addEventListener("progress", (event) => {
      const p = JSON.parse(event.data);
      const frames = p.frames_total ? ` ${p.frames_done}/${p.frames_total} frames` : "";
      setProgress(progress, p.percent, `${p.state}: ${p.phase || ""}${frames} (${Math.round(p.percent)}%)`);
    });
    source.addEventListener("state", (event) => finish(JSON.parse(event.data)));
    source.addEventListener("error", (event) => {
      source.close();
      if (event.data) { // the server's own "error" event: the record expired
        state.job = null;
        reject(new ApiError({ error_message: JSON.parse(event.data).error }, 0));
        return;
      }
      pollJob(submitted.job_id).then(finish, (error) => { state.job = null; reject(error); });
    });
  });
}

function recordError(record) {
  return new ApiError({ error_message: record.error || `job ${record.state}` }, record.error_status);
}

function showWarnings(element, warnings) {
  element.replaceChildren();
  if (!warnings || !warnings.length) return;
  const list = document.createElement("ul");
  for (const text of warnings) {
    const item = document.createElement("li");
    item.textContent = text;
    list.append(item);
  }
  element.append("Warnings:", list);
}

// ------------------------------------------------------------------ detect faces

async function detect() {
  const button = $("#detect");
  const errorBox = $("#detect-error");
  clearErrors($("#inputs"));
  button.disabled = true;
  try {
    const videoUrl = await videoUrlOf();
    if (!videoUrl) {
      setFieldError("video_url", "give a video URL or choose a video file");
      return;
    }
    const characters = [];
    for (const [index, row] of characterRows().entries()) {
      const url = await row.urlOf();
      const id = $(".char-id", row).value.trim();
      if (!url && !id) continue;
      if (!url) {
        setFieldError(`characters[${index}]`, "give a headshot URL or choose an image for this character");
        return;
      }
      const name = $(".char-name", row).value.trim();
      characters.push({ id, ...(name ? { name } : {}), reference_image_url: url });
    }
    const body = {
      video_url: videoUrl,
      sample_fps: Number($("#sample-fps").value),
      similarity_threshold: Number($("#similarity").value),
      characters,
    };
    const record = await runJob("detect-faces", body, $("#detect-progress"));
    if (record.state !== "succeeded") throw recordError(record);
    setProgress($("#detect-progress"), 100, `done: ${record.result.frames.length} samples`);
    await showFaces(record.result, characters.map((c) => c.id));
  } catch (error) {
    showApiError(error, errorBox);
  } finally {
    button.disabled = false;
  }
}

$("#detect").addEventListener("click", detect);

// ------------------------------------------------------------------ people, lanes, thumbnails

function peopleFrom(result, characterIds) {
  const byId = new Map();
  const person = (id) => {
    if (!byId.has(id)) byId.set(id, { id, samples: [], ranges: [], ticked: true });
    return byId.get(id);
  };
  for (const id of characterIds) person(id);
  for (const frame of result.frames) {
    for (const face of frame.faces) person(face.character_id).samples.push({ t: frame.timestamp_ms, face });
  }
  const people = [...byId.values()];
  people.forEach((p, index) => { p.color = COLORS[index % COLORS.length]; });
  for (const p of people) {
    // default ranges: runs of syncable samples, the rule of stream/auto.py
    for (const { t, face } of p.samples) {
      if (!face.syncable) continue;
      const last = p.ranges[p.ranges.length - 1];
      if (last && t - last.lastSample <= 1.5 * state.stepMs) last.lastSample = t;
      else p.ranges.push({ start: t, lastSample: t });
    }
    p.ranges = p.ranges.map((r) => ({ start: r.start, end: Math.min(r.lastSample + state.stepMs, state.durationMs) }));
    p.ticked = p.ranges.length > 0;
  }
  return people;
}

// Merge consecutive samples with the same status into spans: [{start, end, cls, title}].
function statusSpans(p) {
  const spans = [];
  for (const { t, face } of p.samples) {
    const cls = face.syncable ? "syncable" : "skipped";
    const title = face.syncable ? `syncable (quality ${face.sync_quality})` : `skipped: ${face.skip_reason || "not syncable"}`;
    const end = Math.min(t + state.stepMs, state.durationMs);
    const last = spans[spans.length - 1];
    if (last && last.cls === cls && last.title.split(" (")[0] === title.split(" (")[0] && t - last.end <= state.stepMs * 0.6) {
      last.end = end;
    } else {
      spans.push({ start: t, end, cls, title });
    }
  }
  return spans;
}

function speakingSpans(result, id) {
  const speaker = (result.speakers || []).find((s) => s.character_id === id);
  return speaker ? speaker.segments.map((s) => ({ start: s.start_ms, end: s.end_ms })) : [];
}

// Shot boundaries (ms) from `shots[]` when the response has it: the start of every shot but the first.
function shotBoundaries(result) {
  const shots = result.shots || [];
  const starts = shots.map((s) => (typeof s === "number" ? s : s.start_ms ?? s.start_time_ms ?? s.start));
  return starts.filter((t) => Number.isFinite(t) && t > 0);
}

const pct = (ms) => `${(100 * ms) / state.durationMs}%`;

function addBlock(track, cls, start, end, title) {
  const block = document.createElement("div");
  block.className = cls;
  block.style.left = pct(start);
  block.style.width = pct(Math.max(0, end - start));
  if (title) block.title = title;
  track.append(block);
  return block;
}

function drawRuler() {
  const ruler = $("#ruler");
  ruler.replaceChildren();
  const seconds = state.durationMs / 1000;
  const step = seconds > 120 ? 30 : seconds > 30 ? 10 : seconds > 10 ? 2 : 1;
  for (let s = 0; s <= seconds; s += step) {
    const mark = document.createElement("span");
    mark.style.left = pct(s * 1000);
    mark.textContent = `${s}s`;
    ruler.append(mark);
  }
}

function renderLanes() {
  const lanes = $("#lanes");
  lanes.replaceChildren();
  const shots = shotBoundaries(state.detection);
  $("#timeline").dataset.shotBoundaries = String(shots.length);
  for (const p of state.people) {
    const label = document.createElement("div");
    label.className = "lane-label";
    label.dataset.person = p.id;
    const tick = document.createElement("input");
    tick.type = "checkbox";
    tick.checked = p.ticked;
    tick.title = "lip-sync this person";
    tick.addEventListener("change", () => { p.ticked = tick.checked; renderChoices(); });
    p.thumb = document.createElement("canvas");
    p.thumb.width = 80;
    p.thumb.height = 80;
    const name = document.createElement("span");
    name.className = "person";
    name.textContent = p.id;
    name.style.color = p.color;
    const note = document.createElement("span");
    note.className = "muted";
    note.textContent = p.samples.length ? "" : "not seen";
    label.append(tick, p.thumb, name, note);

    const track = document.createElement("div");
    track.className = "lane-track";
    track.dataset.person = p.id;
    for (const span of statusSpans(p)) addBlock(track, `span ${span.cls}`, span.start, span.end, span.title);
    for (const span of speakingSpans(state.detection, p.id)) {
      addBlock(track, "span speaking", span.start, span.end, `speaking ${(span.start / 1000).toFixed(1)}–${(span.end / 1000).toFixed(1)} s`);
    }
    for (const t of shots) addBlock(track, "shot-line", t, t, `shot boundary at ${(t / 1000).toFixed(2)} s`).style.width = "2px";
    p.track = track;
    p.playhead = document.createElement("div");
    p.playhead.className = "playhead";
    track.append(p.playhead);
    track.addEventListener("click", (event) => {
      if (event.target.closest(".range")) return;
      const box = track.getBoundingClientRect();
      seek(((event.clientX - box.left) / box.width) * state.durationMs);
    });
    lanes.append(label, track);
  }
  renderRangeBlocks();
}

function renderRangeBlocks() {
  for (const p of state.people) {
    for (const old of p.track.querySelectorAll(".range")) old.remove();
    if (!p.ticked) continue;
    p.ranges.forEach((range, index) => {
      const block = addBlock(p.track, "range", range.start, range.end,
        `${p.id}: ${(range.start / 1000).toFixed(2)}–${(range.end / 1000).toFixed(2)} s`);
      for (const edge of ["start", "end"]) {
        const handle = document.createElement("div");
        handle.className = `handle ${edge}`;
        handle.addEventListener("pointerdown", (event) => dragEdge(event, p, index, edge));
        block.append(handle);
      }
    });
  }
}

function dragEdge(event, p, index, edge) {
  event.preventDefault();
  event.stopPropagation();
  const box = p.track.getBoundingClientRect();
  const move = (e) => {
    const ms = Math.round(Math.max(0, Math.min(1, (e.clientX - box.left) / box.width)) * state.durationMs);
    const range = p.ranges[index];
    if (edge === "start") range.start = Math.min(ms, range.end - 40);
    else range.end = Math.max(ms, range.start + 40);
    renderRangeBlocks();
    renderChoices();
  };
  const up = () => { window.removeEventListener("pointermove", move); window.removeEventListener("pointerup", up); };
  window.addEventListener("pointermove", move);
  window.addEventListener("pointerup", up);
}

function seekVideo(video, seconds) {
  return new Promise((resolve) => {
    if (Math.abs(video.currentTime - seconds) < 1e-3 && video.readyState >= 2) {
      resolve();
      return;
    }
    video.addEventListener("seeked", () => resolve(), { once: true });
    video.currentTime = seconds;
  });
}

function whenLoaded(video) {
  return new Promise((resolve, reject) => {
    if (video.readyState >= 2) {
      resolve();
      return;
    }
    video.addEventListener("loadeddata", () => resolve(), { once: true });
    video.addEventListener("error", () => reject(new Error("the browser cannot play this video")), { once: true });
  });
}

// A thumbnail per person: the crop of its best sample, drawn from a hidden copy of the video.
async function drawThumbnails() {
  const video = document.createElement("video");
  video.muted = true;
  video.preload = "auto";
  video.src = state.inputs.video.preview;
  try {
    await whenLoaded(video);
  } catch {
    return; // the browser cannot decode it: lanes stay without pictures
  }
  for (const p of state.people) {
    if (!p.samples.length) continue;
    const best = p.samples.reduce((a, b) => ((b.face.sync_quality || 0) > (a.face.sync_quality || 0) ? b : a));
    await seekVideo(video, best.t / 1000 + 0.001);
    const sx = video.videoWidth / state.detection.frame_width;
    const sy = video.videoHeight / state.detection.frame_height;
    const [x, y, w, h] = best.face.bbox;
    const side = Math.max(w, h) * 1.2;
    const cx = x + w / 2;
    const cy = y + h / 2;
    const context = p.thumb.getContext("2d");
    context.fillStyle = "#000";
    context.fillRect(0, 0, p.thumb.width, p.thumb.height);
    context.drawImage(video, (cx - side / 2) * sx, (cy - side / 2) * sy, side * sx, side * sy, 0, 0, p.thumb.width, p.thumb.height);
    p.thumb.dataset.drawn = "1";
  }
  video.removeAttribute("src");
  video.load();
}

// ------------------------------------------------------------------ the player with boxes

const original = $("#original");
const overlay = $("#overlay");

function nearestFrame(ms) {
  const frames = state.detection.frames;
  let best = null;
  for (const frame of frames) {
    if (!best || Math.abs(frame.timestamp_ms - ms) < Math.abs(best.timestamp_ms - ms)) best = frame;
  }
  return best && Math.abs(best.timestamp_ms - ms) <= state.stepMs ? best : null;
}

function drawBoxes() {
  if (!state.detection) return;
  const width = original.clientWidth;
  const height = original.clientHeight;
  overlay.width = width;
  overlay.height = height;
  const context = overlay.getContext("2d");
  context.clearRect(0, 0, width, height);
  const ms = original.currentTime * 1000;
  const frame = nearestFrame(ms);
  overlay.dataset.boxes = "0";
  if (!frame) return;
  const scale = Math.min(width / state.detection.frame_width, height / state.detection.frame_height);
  const dx = (width - state.detection.frame_width * scale) / 2;
  const dy = (height - state.detection.frame_height * scale) / 2;
  context.lineWidth = 2;
  context.font = "13px system-ui, sans-serif";
  for (const face of frame.faces) {
    const p = state.people.find((q) => q.id === face.character_id);
    const color = p ? p.color : "#fff";
    const [x, y, w, h] = face.bbox;
    context.strokeStyle = color;
    context.setLineDash(face.syncable ? [] : [6, 4]);
    context.strokeRect(dx + x * scale, dy + y * scale, w * scale, h * scale);
    const text = face.syncable ? face.character_id : `${face.character_id}: ${face.skip_reason || "skipped"}`;
    context.fillStyle = color;
    context.fillRect(dx + x * scale, dy + y * scale - 17, context.measureText(text).width + 8, 17);
    context.fillStyle = "#fff";
    context.fillText(text, dx + x * scale + 4, dy + y * scale - 4);
  }
  overlay.dataset.boxes = String(frame.faces.length);
}

function updateClock() {
  const seconds = original.currentTime;
  $("#clock").textContent = `${seconds.toFixed(2)} s`;
  $("#scrub").value = String(seconds);
  for (const p of state.people) if (p.playhead) p.playhead.style.left = pct(seconds * 1000);
  drawBoxes();
}

function seek(ms) {
  original.currentTime = Math.max(0, Math.min(state.durationMs, ms)) / 1000;
}

original.addEventListener("timeupdate", updateClock);
original.addEventListener("seeked", updateClock);
original.addEventListener("loadedmetadata", updateClock);
$("#scrub").addEventListener("input", (event) => seek(Number(event.target.value) * 1000));
$("#play-original").addEventListener("click", () => {
  if (original.paused) original.play();
  else original.pause();
});
original.addEventListener("play", () => { $("#play-original").textContent = "Pause"; });
original.addEventListener("pause", () => { $("#play-original").textContent = "Play"; });
window.addEventListener("resize", drawBoxes);

async function showFaces(result, characterIds) {
  state.detection = result;
  state.durationMs = result.video_duration_ms;
  state.stepMs = 1000 / result.sample_fps;
  state.people = peopleFrom(result, characterIds);
  $("#faces").hidden = false;
  $("#render").hidden = false;
  $("#scrub").max = String(state.durationMs / 1000);
  original.src = state.inputs.video.preview || "";
  drawRuler();
  renderLanes();
  renderChoices();
  showWarnings($("#detect-warnings"), result.warnings);
  await drawThumbnails();
  updateClock();
}

// ------------------------------------------------------------------ choose: people and time ranges

function renderChoices() {
  const box = $("#choices");
  box.replaceChildren();
  for (const p of state.people) {
    const choice = document.createElement("div");
    choice.className = "choice";
    choice.dataset.person = p.id;
    const head = document.createElement("label");
    const tick = document.createElement("input");
    tick.type = "checkbox";
    tick.checked = p.ticked;
    tick.addEventListener("change", () => {
      p.ticked = tick.checked;
      const laneTick = document.querySelector(`.lane-label[data-person="${CSS.escape(p.id)}"] input`);
      if (laneTick) laneTick.checked = p.ticked;
      renderRangeBlocks();
      renderChoices();
    });
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = p.id;
    who.style.color = p.color;
    head.append(tick, who);
    choice.append(head);
    if (p.ticked) {
      p.ranges.forEach((range, index) => choice.append(rangeRow(p, range, index)));
      const add = document.createElement("button");
      add.type = "button";
      add.className = "add-range";
      add.textContent = "Add range";
      add.addEventListener("click", () => {
        p.ranges.push({ start: 0, end: state.durationMs });
        renderRangeBlocks();
        renderChoices();
      });
      choice.append(add);
    }
    box.append(choice);
  }
}

function rangeRow(p, range, index) {
  const row = document.createElement("div");
  row.className = "range-row";
  const input = (key) => {
    const field = document.createElement("input");
    field.type = "number";
    field.step = "0.01";
    field.min = "0";
    field.className = key;
    field.value = (range[key] / 1000).toFixed(2);
    field.addEventListener("change", () => {
      range[key] = Math.round(Number(field.value) * 1000);
      renderRangeBlocks();
    });
    return field;
  };
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "✕";
  remove.title = "remove this range";
  remove.addEventListener("click", () => {
    p.ranges.splice(index, 1);
    renderRangeBlocks();
    renderChoices();
  });
  const error = document.createElement("div");
  error.className = "error";
  error.setAttribute("role", "alert");
  row.append("from ", input("start"), " s to ", input("end"), " s ", remove, error);
  row.range = range;
  return row;
}

// bbox of the person's sample nearest the range's start
function bboxNear(p, ms) {
  const sample = p.samples.reduce((a, b) => (Math.abs(b.t - ms) < Math.abs(a.t - ms) ? b : a));
  return sample.face.bbox.map(Number);
}

// ------------------------------------------------------------------ render

async function render() {
  const button = $("#render-button");
  const errorBox = $("#render-error");
  clearErrors($("#render"));
  clearErrors($("#inputs"));
  showWarnings($("#render-warnings"), []);
  const faces = [];
  state.rangeRows = [];
  for (const p of state.people) {
    if (!p.ticked || !p.samples.length) continue;
    const rows = [...document.querySelectorAll(`.choice[data-person="${CSS.escape(p.id)}"] .range-row`)];
    for (const row of rows) {
      faces.push({ character_id: p.id, bbox: bboxNear(p, row.range.start), start_time_ms: row.range.start,
        end_time_ms: row.range.end });
      state.rangeRows.push(row);
    }
  }
  if (!faces.length) {
    errorBox.textContent = "tick at least one person with a time range to lip-sync";
    return;
  }
  button.disabled = true;
  $("#cancel").hidden = false;
  try {
    const videoUrl = await videoUrlOf();
    const audioUrl = await audioUrlOf();
    if (!audioUrl) {
      setFieldError("audio_url", "give the new audio: a URL or a file");
      errorBox.textContent = "the new audio is missing (step 1)";
      return;
    }
    const body = {
      video_url: videoUrl,
      audio_url: audioUrl,
      faces,
      sync_mode: $("#sync-mode").value,
      enhance_quality: $("#enhance").checked,
      fidelity_weight: Number($("#fidelity").value),
    };
    const uploadUrl = $("#upload-url").value.trim();
    if (uploadUrl) body.upload_url = uploadUrl;
    const record = await runJob("lipsync", body, $("#render-progress"));
    if (record.state === "cancelled") {
      setProgress($("#render-progress"), 0, "cancelled");
      errorBox.textContent = record.error || "cancelled";
      return;
    }
    if (record.state !== "succeeded") throw recordError(record);
    setProgress($("#render-progress"), 100, "done");
    showWarnings($("#render-warnings"), record.result.warnings);
    showResult(record.result, uploadUrl);
  } catch (error) {
    showApiError(error, errorBox);
  } finally {
    button.disabled = false;
    $("#cancel").hidden = true;
  }
}

$("#render-button").addEventListener("click", render);
$("#cancel").addEventListener("click", async () => {
  if (!state.job) return;
  $("#cancel").disabled = true;
  try {
    await fetch(`/jobs/${state.job.id}`, { method: "DELETE" });
  } finally {
    $("#cancel").disabled = false;
  }
});

// ------------------------------------------------------------------ result: side by side, in sync

const compareOriginal = $("#compare-original");
const resultVideo = $("#result-video");

function showResult(result, uploadUrl) {
  $("#result").hidden = false;
  compareOriginal.src = state.inputs.video.preview || "";
  const download = $("#download");
  if (result.result_url) {
    resultVideo.src = result.result_url;
    download.href = `${result.result_url}?download=1`;
    download.hidden = false;
    const until = new Date(result.result_expires_at * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    $("#result-expiry").textContent = `kept on this server until ${until}`;
  } else {
    resultVideo.removeAttribute("src");
    download.hidden = true;
    $("#result-expiry").textContent = `uploaded to ${uploadUrl.split("?")[0]}`;
  }
  const processed = (result.faces.results || []).map((f) => `${f.character_id}: ${f.segments ? f.segments.length : 0} segment(s)`);
  $("#result-summary").textContent =
    `${result.output.frame_count} frames, ${(result.output.duration_ms / 1000).toFixed(2)} s, engine ${result.engine}` +
    (processed.length ? `; ${processed.join(", ")}` : "");
}

// The result drives; the original follows its play, pause, seek and (drifting) time.
resultVideo.addEventListener("play", () => { compareOriginal.currentTime = resultVideo.currentTime; compareOriginal.play(); });
resultVideo.addEventListener("pause", () => compareOriginal.pause());
resultVideo.addEventListener("seeked", () => { compareOriginal.currentTime = resultVideo.currentTime; });
resultVideo.addEventListener("timeupdate", () => {
  if (Math.abs(compareOriginal.currentTime - resultVideo.currentTime) > 0.15) compareOriginal.currentTime = resultVideo.currentTime;
});
$("#play-both").addEventListener("click", () => {
  if (resultVideo.paused) resultVideo.play();
  else resultVideo.pause();
});

// ------------------------------------------------------------------ start

// What runs here (/health): shown in the header, refreshed after each job (models load lazily).
function refreshHealth() {
  fetch("/health").then((r) => r.json()).then((h) => {
    $("#health").textContent = `face backend ${h.face_backend || "loading"} · engine ${h.lipsync_engine || "loads with the first job"}` +
      (h.gpu_available ? ` · ${h.gpu_name}` : " · CPU");
  }).catch(() => {});
}

refreshHealth();
