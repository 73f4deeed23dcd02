// Step 1: the inputs. Each "URL or file" input uploads a chosen file at once; the character rows
// (a headshot each); the detect-faces job.
import { runJob, recordError, uploadFile } from "./api.js";
import { $, $$ } from "./dom.js";
import { clearErrors, setFieldError, setProgress, showApiError, showError } from "./errors.js";
import { state } from "./state.js";

// Wire one "URL or file" pair. `onSource(fileOrUrlOrNull)` hears what the browser can preview;
// `onUploaded(body)` the upload's answer (its probe: fps, duration). Returns urlOf(): the URL
// to send (awaiting a running upload), or null when neither is given.
export function wireInput(field, kind, urlInput, fileInput, slot, { onSource, onUploaded } = {}) {
  const status = $(".status", field);
  urlInput.addEventListener("input", () => {
    fileInput.value = "";
    slot.pending = null;
    status.textContent = "";
    clearErrors(field);
  });
  urlInput.addEventListener("change", () => { if (onSource) onSource(urlInput.value.trim() || null); });
  fileInput.addEventListener("change", () => {
    const file = fileInput.files[0];
    clearErrors(field);
    if (!file) return;
    urlInput.value = "";
    if (onSource) onSource(file);
    const upload = uploadFile(file, kind, status);
    slot.pending = upload.then((body) => {
      if (onUploaded) onUploaded(body);
      return body.url;
    });
    slot.pending.catch((error) => {
      status.textContent = "";
      showError(field, error.message);
    });
  });
  return async () => {
    if (slot.pending) return slot.pending;
    return urlInput.value.trim() || null;
  };
}

export function characterRows() {
  return $$("#character-rows .character");
}

function renumberCharacters() {
  characterRows().forEach((row, index) => { row.dataset.field = `characters[${index}]`; });
}

export function addCharacter() {
  const row = $("#character-row").content.firstElementChild.cloneNode(true);
  const slot = { pending: null };
  row.urlOf = wireInput(row, "image", $(".char-url", row), $(".char-file", row), slot);
  $(".remove", row).addEventListener("click", () => { row.remove(); renumberCharacters(); });
  $("#character-rows").append(row);
  renumberCharacters();
  $(".char-id", row).value = `character_${characterRows().length}`;
  return row;
}

// What detect-faces needs from step 1, or null after showing what is missing.
async function detectBody(videoUrlOf) {
  const videoUrl = await videoUrlOf();
  if (!videoUrl) {
    setFieldError("video_url", "give a video URL or choose a video file");
    return null;
  }
  const characters = [];
  for (const [index, row] of characterRows().entries()) {
    const url = await row.urlOf();
    const id = $(".char-id", row).value.trim();
    if (!url && !id) continue;
    if (!url) {
      setFieldError(`characters[${index}]`, "give a headshot URL or choose an image for this character");
      return null;
    }
    const name = $(".char-name", row).value.trim();
    characters.push({ id, ...(name ? { name } : {}), reference_image_url: url });
  }
  return {
    video_url: videoUrl,
    sample_fps: Number($("#sample-fps").value),
    similarity_threshold: Number($("#similarity").value),
    characters,
  };
}

// Run detect-faces; `onResult(result, characterIds)` draws step 2.
export async function detect(videoUrlOf, onResult) {
  const button = $("#detect");
  const progress = $("#detect-progress");
  const errorBox = $("#detect-error");
  clearErrors($("#inputs"));
  if (!progress.hidden) setProgress(progress, 0, "starting"); // no stale "done" or "failed" from the last run
  button.disabled = true;
  try {
    const body = await detectBody(videoUrlOf);
    if (!body) return;
    const record = await runJob("detect-faces", body, (percent, text) => setProgress(progress, percent, text),
      (job) => { state.job = job; });
    if (record.state !== "succeeded") {
      setProgress(progress, 100, record.state === "cancelled" ? "cancelled" : "failed: the reason is shown beside its field");
      throw recordError(record);
    }
    setProgress(progress, 100, `done: ${record.result.frames.length} samples`);
    await onResult(record.result, body.characters.map((c) => c.id), body);
  } catch (error) {
    if (!progress.hidden && !$(".label", progress).textContent.startsWith("failed")) setProgress(progress, 0, "not started: see the message");
    showApiError(error, errorBox);
  } finally {
    state.job = null;
    button.disabled = false;
  }
}
