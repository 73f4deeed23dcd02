// Step 2's timeline: a ruler, a lane of the new audio's waveform, then one lane per person with
// syncable / skipped / speaking spans, shot boundaries, that person's stem waveform and the ranges
// to lip-sync (drag an edge; click a range to select it for I/O, loop and zoom).
import { $, make, seconds } from "./dom.js";
import { notSeenReason, shotBoundaries, speakingSpans, statusSpans } from "./people.js";
import { renderChoices } from "./ranges.js";
import { pct, state } from "./state.js";
import { drawWave } from "./waveform.js";

const hooks = { seekMs: () => {} };

// `seekMs(ms)`: what a click on a lane does (the preview transport seeks).
export function onLaneSeek(seekMs) { hooks.seekMs = seekMs; }

function addBlock(track, cls, start, end, title) {
  const block = make("div", { className: cls });
  block.style.left = pct(start);
  block.style.width = pct(Math.max(0, end - start));
  if (title) block.title = title;
  track.append(block);
  return block;
}

export function drawRuler() {
  const ruler = $("#ruler");
  ruler.replaceChildren();
  const total = state.durationMs / 1000;
  const step = total > 120 ? 30 : total > 30 ? 10 : total > 10 ? 2 : 1;
  for (let s = 0; s <= total; s += step) {
    const mark = make("span", {}, `${s}s`);
    mark.style.left = pct(s * 1000);
    ruler.append(mark);
  }
}

function seekOnClick(track) {
  track.addEventListener("click", (event) => {
    if (event.target.closest(".range")) return;
    const box = track.getBoundingClientRect();
    hooks.seekMs(((event.clientX - box.left) / box.width) * state.durationMs);
  });
}

function playhead(track) {
  const line = make("div", { className: "playhead" });
  track.append(line);
  return line;
}

// The new audio's lane: its waveform, or why there is none.
function audioLane() {
  const note = make("span", { className: "muted wave-note" });
  const label = make("div", { className: "lane-label audio-label", dataset: { lane: "audio" } },
    make("span", { className: "person" }, "New audio"), note);
  const canvas = make("canvas", { className: "wave" });
  const track = make("div", { className: "lane-track audio-track", dataset: { lane: "audio" } }, canvas);
  seekOnClick(track);
  state.audioLane = { note, canvas, track, playhead: playhead(track) };
  return [label, track];
}

export function renderLanes() {
  const lanes = $("#lanes");
  lanes.replaceChildren(...audioLane());
  const shots = shotBoundaries(state.detection);
  $("#timeline").dataset.shotBoundaries = String(shots.length);
  for (const p of state.people) {
    const tick = make("input", { type: "checkbox", checked: p.ticked, title: "lip-sync this person" });
    tick.addEventListener("change", () => setTicked(p, tick.checked));
    p.laneTick = tick;
    p.thumb = make("canvas", { width: 80, height: 80 });
    const name = make("span", { className: "person" }, p.id);
    name.style.color = p.color;
    const reason = p.samples.length ? "" : p.isCharacter ? notSeenReason(state.request) : "not seen";
    const note = make("span", { className: "muted note", title: reason }, reason ? "not seen" : "");
    p.note = note;
    const label = make("div", { className: "lane-label" }, tick, p.thumb, name, note);
    label.dataset.person = p.id;
    const stemCanvas = make("canvas", { className: "wave stem-wave" });
    const track = make("div", { className: "lane-track" }, stemCanvas);
    track.dataset.person = p.id;
    for (const span of statusSpans(p)) addBlock(track, `span ${span.cls}`, span.start, span.end, span.title);
    for (const span of speakingSpans(state.detection, p.id)) {
      addBlock(track, "span speaking", span.start, span.end, `speaking ${seconds(span.start)}–${seconds(span.end)}`);
    }
    for (const t of shots) addBlock(track, "shot-line", t, t, `shot boundary at ${seconds(t)}`).style.width = "2px";
    p.track = track;
    p.stemCanvas = stemCanvas;
    p.playhead = playhead(track);
    seekOnClick(track);
    lanes.append(label, track);
    if (reason) lanes.append(make("div", { className: "lane-reason" }), make("div", { className: "lane-reason muted" }, reason));
  }
  renderRangeBlocks();
  drawWaves();
}

export function setTicked(p, ticked) {
  p.ticked = ticked;
  if (p.laneTick) p.laneTick.checked = ticked;
  if (!ticked && state.selected && state.selected.person === p) state.selected = null;
  renderRangeBlocks();
  renderChoices();
}

// Select `p.ranges[index]` for I/O, loop and zoom (the first range of the first ticked person by default).
export function selectRange(p, index) {
  state.selected = p ? { person: p, index } : null;
  renderRangeBlocks();
  for (const row of document.querySelectorAll(".range-row")) {
    row.classList.toggle("selected", Boolean(p) && row.person === p && row.index === index);
  }
}

export function defaultSelection() {
  const p = state.people.find((q) => q.ticked && q.ranges.length);
  state.selected = p ? { person: p, index: 0 } : null;
}

export function renderRangeBlocks() {
  for (const p of state.people) {
    if (!p.track) continue;
    for (const old of p.track.querySelectorAll(".range")) old.remove();
    if (!p.ticked) continue;
    p.ranges.forEach((range, index) => {
      const chosen = state.selected && state.selected.person === p && state.selected.index === index;
      const block = addBlock(p.track, chosen ? "range selected" : "range", range.start, range.end,
        `${p.id}: ${(range.start / 1000).toFixed(2)}–${(range.end / 1000).toFixed(2)} s`);
      block.addEventListener("click", () => selectRange(p, index));
      for (const edge of ["start", "end"]) {
        const handle = make("div", { className: `handle ${edge}` });
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

// The new audio's waveform and each person's stem, on the video's timeline.
export function drawWaves() {
  if (!state.audioLane) return;
  const audio = state.inputs.audio;
  const { note, canvas } = state.audioLane;
  drawWave(canvas, audio.wave, state.durationMs, 0, "#4a5a6a");
  note.textContent = audio.wave ? "" : audio.waveNote || "give the new audio in step 1";
  note.title = note.textContent;
  for (const p of state.people) {
    if (!p.stemCanvas) continue;
    const voice = p.voice;
    p.stemCanvas.hidden = !(voice && voice.wave); // shown first: a hidden canvas has no width to draw in
    drawWave(p.stemCanvas, voice && voice.wave, state.durationMs, voice ? voice.offsetMs() : 0, p.color);
  }
}

export function movePlayheads(secondsNow) {
  const left = pct(secondsNow * 1000);
  if (state.audioLane) state.audioLane.playhead.style.left = left;
  for (const p of state.people) if (p.playhead) p.playhead.style.left = left;
}
