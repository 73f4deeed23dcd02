// The detect-faces result as people: samples per person, default ranges (the rule of --auto),
// status and speaking spans, and where a face (and its mouth) is at a given time. No DOM here.
import { COLORS } from "./dom.js";
import { state } from "./state.js";

export function peopleFrom(result, characterIds) {
  const byId = new Map();
  const person = (id) => {
    if (!byId.has(id)) byId.set(id, { id, samples: [], ranges: [], ticked: true, isCharacter: false });
    return byId.get(id);
  };
  for (const id of characterIds) person(id).isCharacter = true;
  for (const frame of result.frames) {
    for (const face of frame.faces) person(face.character_id).samples.push({ t: frame.timestamp_ms, face });
  }
  const people = [...byId.values()];
  people.forEach((p, index) => { p.color = COLORS[index % COLORS.length]; });
  for (const p of people) {
    // default ranges: runs of syncable samples
    const runs = [];
    for (const { t, face } of p.samples) {
      if (!face.syncable) continue;
      const last = runs[runs.length - 1];
      if (last && t - last.lastSample <= 1.5 * state.stepMs) last.lastSample = t;
      else runs.push({ start: t, lastSample: t });
    }
    p.ranges = runs.map((r) => ({ start: r.start, end: Math.min(r.lastSample + state.stepMs, state.durationMs) }));
    p.ticked = p.ranges.length > 0;
  }
  return people;
}

// Why a character given a headshot has no lane content.
export function notSeenReason(request) {
  const every = (1 / request.sample_fps).toFixed(2);
  return `not seen: no face in the samples (one every ${every} s) matched this headshot at the identity ` +
    `threshold ${request.similarity_threshold}; lower the threshold, sample more often, or use a headshot ` +
    "closer to how they look in this video";
}

// Consecutive samples with the same status merged into spans: [{start, end, cls, title}].
export function statusSpans(p) {
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

export function speakingSpans(result, id) {
  const speaker = (result.speakers || []).find((s) => s.character_id === id);
  return speaker ? speaker.segments.map((s) => ({ start: s.start_ms, end: s.end_ms })) : [];
}

// Shot boundaries (ms): the start of every shot but the first.
export function shotBoundaries(result) {
  const shots = result.shots || [];
  const starts = shots.map((s) => (typeof s === "number" ? s : s.start_ms ?? s.start_time_ms ?? s.start));
  return starts.filter((t) => Number.isFinite(t) && t > 0);
}

// The person's sample nearest `ms`, or null when they have none.
export function sampleNear(p, ms) {
  if (!p.samples.length) return null;
  return p.samples.reduce((a, b) => (Math.abs(b.t - ms) < Math.abs(a.t - ms) ? b : a));
}

export function bboxNear(p, ms) {
  return sampleNear(p, ms).face.bbox.map(Number);
}

// The mouth's point as fractions of the frame (x, y), from the nearest sample's box.
export function mouthNear(p, ms) {
  const sample = sampleNear(p, ms);
  if (!sample) return null;
  const [x, y, w, h] = sample.face.bbox.map(Number);
  return { x: (x + w / 2) / state.detection.frame_width, y: (y + 0.78 * h) / state.detection.frame_height };
}

export function nearestFrame(ms) {
  let best = null;
  for (const frame of state.detection.frames) {
    if (!best || Math.abs(frame.timestamp_ms - ms) < Math.abs(best.timestamp_ms - ms)) best = frame;
  }
  return best && Math.abs(best.timestamp_ms - ms) <= state.stepMs ? best : null;
}
