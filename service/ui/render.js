// Step 3's request: faces[] from the ticked people's ranges (each with that person's voice), the
// request-wide settings, the lipsync job with progress and cancel; the result goes to compare.js.
import { cancelJob, recordError, runJob } from "./api.js";
import { $, numberOf } from "./dom.js";
import { clearErrors, setFieldError, setProgress, showApiError, showWarnings } from "./errors.js";
import { bboxNear } from "./people.js";
import { state } from "./state.js";
import { voiceFields } from "./stems.js";

// faces[] and who owns each entry (for errors beside their row or voice); [] when none is chosen.
async function chosenFaces() {
  const faces = [];
  state.faceOwners = [];
  for (const p of state.people) {
    if (!p.ticked || !p.samples.length) continue;
    const voice = await voiceFields(p);
    const rows = [...$("#choices").querySelectorAll(".range-row")].filter((row) => row.person === p);
    for (const row of rows) {
      faces.push({ character_id: p.id, bbox: bboxNear(p, row.range.start), start_time_ms: row.range.start,
        end_time_ms: row.range.end, ...voice });
      state.faceOwners.push({ person: p, row });
    }
  }
  return faces;
}

export async function render(videoUrlOf, audioUrlOf, showResult) {
  const button = $("#render-button");
  const errorBox = $("#render-error");
  const progress = $("#render-progress");
  clearErrors($("#render"));
  clearErrors($("#inputs"));
  showWarnings($("#render-warnings"), []);
  button.disabled = true;
  try {
    const faces = await chosenFaces();
    if (!faces.length) {
      errorBox.textContent = "tick at least one person with a time range to lip-sync";
      return;
    }
    const audioUrl = await audioUrlOf();
    if (!audioUrl && !faces.every((f) => f.audio_url)) {
      setFieldError("audio_url", "give the new audio: a URL or a file (or a stem for every person ticked)");
      errorBox.textContent = "the new audio is missing (step 1)";
      return;
    }
    const body = {
      video_url: await videoUrlOf(),
      faces,
      sync_mode: $("#sync-mode").value,
      enhance_quality: $("#enhance").checked && !$("#enhance").disabled,
      fidelity_weight: Number($("#fidelity").value),
      expressiveness: numberOf($("#expressiveness")) ?? 0.5,
    };
    if (audioUrl) body.audio_url = audioUrl;
    const uploadUrl = $("#upload-url").value.trim();
    if (uploadUrl) body.upload_url = uploadUrl;
    $("#cancel").hidden = false;
    const record = await runJob("lipsync", body, (percent, text) => setProgress(progress, percent, text),
      (job) => { state.job = job; });
    if (record.state === "cancelled") {
      setProgress(progress, 0, "cancelled");
      errorBox.textContent = record.error || "cancelled";
      return;
    }
    if (record.state !== "succeeded") {
      setProgress(progress, 100, "failed: the reason is shown beside its field");
      throw recordError(record);
    }
    setProgress(progress, 100, "done");
    showWarnings($("#render-warnings"), record.result.warnings);
    showResult(record.result, uploadUrl);
  } catch (error) {
    showApiError(error, errorBox);
  } finally {
    state.job = null;
    button.disabled = false;
    $("#cancel").hidden = true;
  }
}

export async function cancel() {
  if (!state.job) return;
  $("#cancel").disabled = true;
  try {
    await cancelJob(state.job.id);
  } catch (error) {
    $("#render-error").textContent = `cancelling failed: ${error.message}`;
  } finally {
    $("#cancel").disabled = false;
  }
}
