// The review page: inputs -> detect-faces job -> lanes per person -> choose -> lipsync job -> compare.
// Plain ES modules, no build step; everything comes from this server. This module wires them up.
import { getJson } from "./api.js";
import { $ } from "./dom.js";
import { fieldElement, showWarnings } from "./errors.js";
import { addCharacter, detect, wireInput } from "./inputs.js";
import { peopleFrom } from "./people.js";
import { Transport } from "./player.js";
import { renderChoices } from "./ranges.js";
import { cancel, render } from "./render.js";
import { SoundTrack } from "./sound.js";
import { state } from "./state.js";
import { onVoiceChange, voiceFor } from "./stems.js";
import { drawBoxes, drawThumbnails } from "./thumbs.js";
import { defaultSelection, drawRuler, drawWaves, movePlayheads, onLaneSeek, renderLanes } from "./timeline.js";
import { decodeAudio, peaks } from "./waveform.js";
import { resultTransport, showResult } from "./compare.js";
import { bindKeys, setLoop } from "./keys.js";

const original = $("#original");
const overlay = $("#overlay");

// ------------------------------------------------------------------ step 1: inputs

const videoSlot = state.inputs.video;
const videoUrlOf = wireInput(fieldElement("video_url"), "video", $("#video-url"), $("#video-file"), videoSlot, {
  onSource: (source) => {
    videoSlot.preview = source instanceof Blob ? URL.createObjectURL(source) : source;
    state.fpsKnown = false;
  },
  onUploaded: (body) => {
    if (body.media && body.media.fps > 0) {
      state.fps = body.media.fps;
      state.fpsKnown = true;
    }
  },
});

const audioSlot = state.inputs.audio;
let audioChoice = 0;
async function showNewAudio(source) {
  const mine = ++audioChoice; // a later choice wins over a slower decode of an earlier one
  Object.assign(audioSlot, { wave: null, buffer: null, waveNote: source ? "decoding…" : "" });
  drawWaves();
  if (!source) return;
  try {
    const buffer = await decodeAudio(source);
    if (mine !== audioChoice) return;
    Object.assign(audioSlot, { buffer, wave: peaks(buffer), waveNote: "" });
  } catch (error) {
    if (mine === audioChoice) audioSlot.waveNote = `no waveform: ${error.message}`;
  }
  drawWaves();
  preview.sound.start();
  soundNote();
}
const audioUrlOf = wireInput(fieldElement("audio_url"), "audio", $("#audio-url"), $("#audio-file"), audioSlot,
  { onSource: showNewAudio });

$("#add-character").addEventListener("click", addCharacter);

// ------------------------------------------------------------------ step 2: the preview and its lanes

// What the preview sounds like: the new audio, else (as the server mixes them) the ticked people's stems.
function newSound() {
  if (audioSlot.buffer) return [{ buffer: audioSlot.buffer, offsetMs: 0 }];
  return state.people.filter((p) => p.ticked && p.voice && p.voice.buffer)
    .map((p) => ({ buffer: p.voice.buffer, offsetMs: p.voice.offsetMs() }));
}

const preview = {
  transport: new Transport({
    video: original, scrub: $("#scrub"), clock: $("#clock"), playButton: $("#play-original"),
    onTime: (secondsNow) => { movePlayheads(secondsNow); drawBoxes(original, overlay); },
  }),
  sound: new SoundTrack(original, newSound),
};

function setPreviewSound(choice) {
  original.muted = choice !== "original";
  preview.sound.setEnabled(choice === "new");
  $("#preview-sound").dataset.choice = choice;
  soundNote();
}

// Say why the preview is silent when the new sound was chosen but nothing is decoded to play.
function soundNote() {
  const silent = $("#preview-sound").value === "new" && !newSound().length;
  $("#sound-note").textContent = silent ? "nothing to hear yet: give the new audio (or a stem) a file or a readable URL" : "";
}
original.addEventListener("play", soundNote);
onVoiceChange(() => { preview.sound.start(); soundNote(); });
$("#preview-sound").addEventListener("change", (event) => setPreviewSound(event.target.value));
onLaneSeek((ms) => preview.transport.seekMs(ms));
$("#step-back").addEventListener("click", () => preview.transport.step(-1));
$("#step-next").addEventListener("click", () => preview.transport.step(1));

async function showFaces(result, characterIds, request) {
  state.detection = result;
  state.request = request;
  state.durationMs = result.video_duration_ms;
  state.stepMs = 1000 / result.sample_fps;
  if (result.fps > 0) { // the server's probe of the very video; an upload's probe said the same
    state.fps = result.fps;
    state.fpsKnown = true;
  }
  state.people = peopleFrom(result, characterIds);
  for (const p of state.people) if (p.samples.length) p.voice = voiceFor(p);
  defaultSelection();
  $("#faces").hidden = false;
  $("#render").hidden = false;
  original.src = videoSlot.preview || "";
  drawRuler();
  renderLanes();
  renderChoices();
  preview.transport.setup();
  setPreviewSound($("#preview-sound").value);
  showWarnings($("#detect-warnings"), result.warnings);
  await drawThumbnails(videoSlot.preview);
  preview.transport.update();
}

$("#detect").addEventListener("click", () => detect(videoUrlOf, showFaces).then(refreshHealth));

// ------------------------------------------------------------------ step 3 and 4: render, compare

$("#render-button").addEventListener("click", () => render(videoUrlOf, audioUrlOf, showResult).then(refreshHealth));
$("#cancel").addEventListener("click", cancel);

// A message about the last Render goes stale once anything it was about is edited. It is cleared
// as a field is typed in or ticked ("input"), never by the commit that a press on Render causes
// ("change" on blur), and its line stays reserved: nothing moves between a press and its release.
for (const section of [$("#faces"), $("#render")]) {
  section.addEventListener("input", () => { $("#render-error").textContent = ""; });
}

for (const box of document.querySelectorAll("input.loop")) box.addEventListener("change", () => setLoop(box.checked));

bindKeys({
  preview: { transport: preview.transport, area: $("#faces") },
  result: { transport: resultTransport, area: $("#result") },
}, (message) => { $("#key-hint").textContent = message; });

window.addEventListener("resize", () => { drawWaves(); drawBoxes(original, overlay); });

// ------------------------------------------------------------------ what runs here

// /health in the header, refreshed after each job (models load lazily); Restore faces is
// disabled, with the reason, when CodeFormer's weights are missing or failed to load.
async function refreshHealth() {
  let health;
  try {
    health = await getJson("/health");
  } catch {
    return;
  }
  state.health = health;
  $("#health").textContent = `face backend ${health.face_backend || "loading"} · engine ${health.lipsync_engine || "loads with the first job"}` +
    (health.gpu_available ? ` · ${health.gpu_name}` : " · CPU");
  const missing = (health.missing_weights || []).filter((path) => path.startsWith("codeformer/"));
  const failed = (health.load_errors || {}).codeformer;
  const enhance = $("#enhance");
  const note = $("#enhance-note");
  if (missing.length || failed) {
    enhance.checked = false;
    enhance.disabled = true;
    note.textContent = missing.length
      ? `unavailable: CodeFormer's weights are not in MODELS_DIR (${missing.join(", ")}); ` +
        "get them with python scripts/download_models.py --only codeformer"
      : `unavailable: CodeFormer failed to load (${failed})`;
  } else {
    enhance.disabled = false;
    note.textContent = "";
  }
}

refreshHealth();

// For the browser test and the console: the page's state.
window.state = state;
