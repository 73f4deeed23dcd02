// A thumbnail per person (the crop of their best sample, from a hidden copy of the video) and the
// boxes drawn over the preview at its current time.
import { nearestFrame } from "./people.js";
import { state } from "./state.js";

function seekVideo(video, secondsAt) {
  return new Promise((resolve) => {
    if (Math.abs(video.currentTime - secondsAt) < 1e-3 && video.readyState >= 2) {
      resolve();
      return;
    }
    video.addEventListener("seeked", () => resolve(), { once: true });
    video.currentTime = secondsAt;
  });
}

export function whenLoaded(video) {
  return new Promise((resolve, reject) => {
    if (video.readyState >= 2) {
      resolve();
      return;
    }
    video.addEventListener("loadeddata", () => resolve(), { once: true });
    video.addEventListener("error", () => reject(new Error("the browser cannot play this video")), { once: true });
  });
}

export async function drawThumbnails(src) {
  const video = document.createElement("video");
  video.muted = true;
  video.preload = "auto";
  video.src = src;
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
    const g = p.thumb.getContext("2d");
    g.fillStyle = "#000";
    g.fillRect(0, 0, p.thumb.width, p.thumb.height);
    g.drawImage(video, (cx - side / 2) * sx, (cy - side / 2) * sy, side * sx, side * sy, 0, 0, p.thumb.width, p.thumb.height);
    p.thumb.dataset.drawn = "1";
  }
  video.removeAttribute("src");
  video.load();
}

// The boxes of the sample nearest the video's time, over the picture (letterbox aware).
export function drawBoxes(video, overlay) {
  if (!state.detection) return;
  const width = video.clientWidth;
  const height = video.clientHeight;
  overlay.width = width;
  overlay.height = height;
  const g = overlay.getContext("2d");
  g.clearRect(0, 0, width, height);
  const frame = nearestFrame(video.currentTime * 1000);
  overlay.dataset.boxes = "0";
  if (!frame) return;
  const scale = Math.min(width / state.detection.frame_width, height / state.detection.frame_height);
  const dx = (width - state.detection.frame_width * scale) / 2;
  const dy = (height - state.detection.frame_height * scale) / 2;
  g.lineWidth = 2;
  g.font = "13px system-ui, sans-serif";
  for (const face of frame.faces) {
    const p = state.people.find((q) => q.id === face.character_id);
    const color = p ? p.color : "#fff";
    const [x, y, w, h] = face.bbox;
    g.strokeStyle = color;
    g.setLineDash(face.syncable ? [] : [6, 4]);
    g.strokeRect(dx + x * scale, dy + y * scale, w * scale, h * scale);
    const text = face.syncable ? face.character_id : `${face.character_id}: ${face.skip_reason || "skipped"}`;
    g.fillStyle = color;
    g.fillRect(dx + x * scale, dy + y * scale - 17, g.measureText(text).width + 8, 17);
    g.fillStyle = "#fff";
    g.fillText(text, dx + x * scale + 4, dy + y * scale - 4);
  }
  overlay.dataset.boxes = String(frame.faces.length);
}
