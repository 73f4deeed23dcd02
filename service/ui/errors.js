// Messages where a person looks for them: an API error beside the field it names, progress bars,
// warning lists. Rows are found by index or by comparing ids in JavaScript, never by a selector
// built from a user string (an id may hold quotes).
import { $, $$, make } from "./dom.js";
import { state } from "./state.js";

const FIELD_RE = /\b((?:faces|characters)\[\d+\](?:\.[a-z_]+)?|video_url|audio_url|upload_url|webhook_url|sample_fps|similarity_threshold|sync_mode|fidelity_weight|enhance_quality|expressiveness)\b/;
const VOICE_FIELDS = new Set(["audio_url", "audio_offset_ms", "expressiveness"]);

export function fieldElement(name) {
  const exact = $$("[data-field]").find((element) => element.dataset.field === name);
  if (exact) return exact;
  const base = name.split(".")[0];
  return base !== name ? $$("[data-field]").find((element) => element.dataset.field === base) || null : null;
}

export function showError(element, message) {
  element.classList.add("invalid");
  $(".error", element).textContent = message;
}

export function setFieldError(name, message) {
  const element = fieldElement(name);
  if (!element) return false;
  showError(element, message);
  return true;
}

export function clearErrors(root = document) {
  for (const element of $$(".invalid", root)) element.classList.remove("invalid");
  for (const element of $$(".error", root)) element.textContent = "";
}

// Python's repr of a string, as the server quotes ids in its messages.
export function pythonRepr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let body = text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/\r/g, "\\r").replace(/\t/g, "\\t");
  if (quote === "'") body = body.replace(/'/g, "\\'");
  return quote + body + quote;
}

// The characters[i] a message is about, when it names a character by id rather than by field.
function characterField(message) {
  const rows = $$("#character-rows .character").map((row, index) => ({ index, id: $(".char-id", row).value.trim() }));
  rows.sort((a, b) => b.id.length - a.id.length); // "bob" must not claim a message about "bobby"
  for (const { index, id } of rows) {
    if (!id) continue;
    if ([`character '${id}'`, `character ${pythonRepr(id)}`, `character_id ${pythonRepr(id)}`].some((s) => message.includes(s))) {
      return `characters[${index}]`;
    }
  }
  return null;
}

// Show an API error beside the field it names, else in `fallback`.
export function showApiError(error, fallback) {
  const message = error.message || String(error);
  const payload = error.payload || {};
  const name = payload.field || (message.match(FIELD_RE) || [])[1] || characterField(message);
  const face = name && name.match(/^faces\[(\d+)\](?:\.([a-z_]+))?/);
  if (face && state.faceOwners[Number(face[1])]) {
    const owner = state.faceOwners[Number(face[1])];
    showError(VOICE_FIELDS.has(face[2]) ? owner.person.voice.box : owner.row, message);
    return;
  }
  if (name && setFieldError(name, message)) return;
  fallback.textContent = message;
}

export function setProgress(element, percent, text) {
  element.hidden = false;
  $(".bar", element).style.width = `${Math.max(0, Math.min(100, percent))}%`;
  $(".label", element).textContent = text;
}

export function showWarnings(element, warnings) {
  element.replaceChildren();
  if (!warnings || !warnings.length) return;
  element.append("Warnings:", make("ul", {}, ...warnings.map((text) => make("li", {}, text))));
}
