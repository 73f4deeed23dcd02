// One voice per character: a stem (URL or file, placed at an offset on the video's timeline) and
// an expressiveness per person, mirroring faces[].audio_url / audio_offset_ms / expressiveness.
// The stem's waveform is drawn in that person's lane.
import { make, numberOf } from "./dom.js";
import { clearErrors } from "./errors.js";
import { wireInput } from "./inputs.js";
import { drawWaves } from "./timeline.js";
import { decodeAudio, peaks } from "./waveform.js";

const listeners = [];

// `listener()` runs when a stem is decoded or moved (the preview restarts its sound).
export function onVoiceChange(listener) { listeners.push(listener); }

const changed = () => { drawWaves(); for (const listener of listeners) listener(); };

// Build (once per person) the voice controls; p.voice keeps them across redraws of the choices.
export function voiceFor(p) {
  const urlInput = make("input", { type: "url", className: "stem-url", placeholder: "stem URL (optional)",
    autocomplete: "off", "aria-label": `${p.id}'s stem URL` });
  const fileInput = make("input", { type: "file", className: "stem-file", accept: "audio/*,video/*",
    "aria-label": `${p.id}'s stem file` });
  const offsetInput = make("input", { type: "number", className: "stem-offset", value: "0", step: "10",
    "aria-label": `${p.id}'s stem offset in ms` });
  const expressInput = make("input", { type: "number", className: "expressiveness", min: "0", max: "1", step: "0.05",
    placeholder: "as above", "aria-label": `${p.id}'s expressiveness` });
  const status = make("span", { className: "status" });
  const note = make("span", { className: "muted wave-note" });
  const box = make("div", { className: "voice field" },
    make("span", { className: "voice-label" }, "Voice"), urlInput, make("span", { className: "or" }, "or"), fileInput,
    " at ", offsetInput, " ms · expressiveness ", expressInput, status, note,
    make("div", { className: "error", role: "alert" }));
  const slot = { pending: null };
  const voice = {
    box, slot, wave: null, buffer: null,
    offsetMs: () => numberOf(offsetInput) ?? 0,
    expressiveness: () => numberOf(expressInput),
  };
  let latest = 0;
  const show = async (source) => {
    const mine = ++latest; // a later choice wins over a slower decode of an earlier one
    voice.wave = null;
    voice.buffer = null;
    note.textContent = "";
    drawWaves();
    if (!source) return;
    try {
      const buffer = await decodeAudio(source);
      if (mine !== latest) return;
      voice.buffer = buffer;
      voice.wave = peaks(buffer);
    } catch (error) {
      if (mine === latest) note.textContent = `no waveform: ${error.message}`;
    }
    changed();
  };
  voice.urlOf = wireInput(box, "audio", urlInput, fileInput, slot, { onSource: show });
  offsetInput.addEventListener("input", () => { clearErrors(box); changed(); });
  expressInput.addEventListener("input", () => clearErrors(box));
  return voice;
}

// faces[] fields of this person's voice: audio_url and audio_offset_ms when a stem is given,
// expressiveness when set (else the request's applies).
export async function voiceFields(p) {
  const fields = {};
  const url = await p.voice.urlOf();
  if (url) {
    fields.audio_url = url;
    fields.audio_offset_ms = p.voice.offsetMs();
  }
  const expressiveness = p.voice.expressiveness();
  if (expressiveness !== null) fields.expressiveness = expressiveness;
  return fields;
}
