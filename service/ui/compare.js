// Step 4: compare closely on one player. The original under the result, a wipe between them
// (left of the line: before; right: after), a before/after toggle, a zoom that follows a person's
// mouth, and the result's own frame-accurate transport (the original follows it).
import { $, make } from "./dom.js";
import { mouthNear } from "./people.js";
import { Transport } from "./player.js";
import { state } from "./state.js";

const ZOOM = 3;
const original = $("#compare-original");
const result = $("#result-video");

export const resultTransport = new Transport({
  video: result, scrub: $("#result-scrub"), clock: $("#result-clock"), playButton: $("#play-both"),
  playLabel: "Play both", onTime: (secondsNow) => followMouth(secondsNow),
});

// The original follows the result's play, pause, seek and (drifting) time.
result.addEventListener("play", () => { original.currentTime = result.currentTime; original.play().catch(() => {}); });
result.addEventListener("pause", () => original.pause());
result.addEventListener("seeked", () => { original.currentTime = result.currentTime; });
result.addEventListener("timeupdate", () => {
  if (Math.abs(original.currentTime - result.currentTime) > 0.15) original.currentTime = result.currentTime;
});

// Wipe position in percent: 0 shows only the result (after), 100 only the original (before).
export function setWipe(percent) {
  const value = Math.max(0, Math.min(100, Number(percent)));
  $("#wipe").value = String(value);
  result.style.clipPath = `inset(0 0 0 ${value}%)`;
  $("#wipe-line").style.left = `${value}%`;
  $("#compare").dataset.showing = value >= 100 ? "before" : value <= 0 ? "after" : "wipe";
  $("#before-after").textContent = value >= 100 ? "Show after (B)" : "Show before (B)";
}

// B: from a wipe or the result to the original alone, and back to the result alone.
export function toggleBeforeAfter() {
  setWipe(Number($("#wipe").value) >= 100 ? 0 : 100);
}

function followMouth(secondsNow) {
  const stage = $("#compare-zoom");
  const p = state.people.find((q) => q.id === state.zoomOn);
  const mouth = p && mouthNear(p, secondsNow * 1000);
  if (!mouth) {
    stage.style.transform = "";
    stage.dataset.zoom = "";
    return;
  }
  stage.style.transformOrigin = `${(100 * mouth.x).toFixed(1)}% ${(100 * mouth.y).toFixed(1)}%`;
  stage.style.transform = `scale(${ZOOM})`;
  stage.dataset.zoom = p.id;
}

export function setZoom(id) {
  state.zoomOn = id || null;
  $("#zoom").value = id || "";
  followMouth(result.currentTime);
}

function zoomChoices() {
  const select = $("#zoom");
  select.replaceChildren(make("option", { value: "" }, "nobody (whole frame)"));
  for (const p of state.people) if (p.samples.length) select.append(make("option", { value: p.id }, p.id));
  select.value = state.zoomOn || "";
}

export function showResult(body, uploadUrl) {
  $("#result").hidden = false;
  const aspect = state.detection.frame_width / state.detection.frame_height;
  $("#compare").style.aspectRatio = String(aspect);
  $("#compare").style.width = `min(100%, ${Math.round(400 * aspect)}px)`; // 400 px high at most
  original.src = state.inputs.video.preview || "";
  const download = $("#download");
  if (body.result_url) {
    result.src = body.result_url;
    download.href = `${body.result_url}?download=1`;
    download.hidden = false;
    const until = new Date(body.result_expires_at * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    $("#result-expiry").textContent = `kept on this server until ${until}`;
  } else {
    result.removeAttribute("src");
    download.hidden = true;
    $("#result-expiry").textContent = `uploaded to ${uploadUrl.split("?")[0]}`;
  }
  const processed = (body.faces.results || []).map((f) => `${f.character_id}: ${f.segments ? f.segments.length : 0} segment(s)`);
  $("#result-summary").textContent =
    `${body.output.frame_count} frames, ${(body.output.duration_ms / 1000).toFixed(2)} s, engine ${body.engine}` +
    (processed.length ? `; ${processed.join(", ")}` : "");
  zoomChoices();
  setWipe($("#wipe").value);
  resultTransport.setup();
}

$("#wipe").addEventListener("input", (event) => setWipe(event.target.value));
$("#before-after").addEventListener("click", toggleBeforeAfter);
$("#zoom").addEventListener("change", (event) => setZoom(event.target.value));
$("#result-back").addEventListener("click", () => resultTransport.step(-1));
$("#result-next").addEventListener("click", () => resultTransport.step(1));
