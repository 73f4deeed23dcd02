// The page's one shared state; modules read and change it, and redraw what they own.

export const state = {
  inputs: {
    video: { pending: null, preview: null }, // pending: its upload; preview: what the <video>s play
    audio: { pending: null, buffer: null, wave: null, waveNote: "" }, // decoded in the browser: heard and drawn
  },
  detection: null, // the detect-faces result
  request: null, // the detect-faces request it answers (sample_fps, similarity_threshold)
  audioLane: null, // {note, canvas, track, playhead} of the new audio lane
  people: [], // {id, color, samples: [{t, face}], ranges: [{start, end}], ticked, voice, track, ...}
  durationMs: 0,
  stepMs: 333, // ms between detect-faces samples
  fps: 25, // the video's frame rate: frame stepping, timecodes, I/O points
  fpsKnown: false, // false: 25 assumed until an upload's probe or detect-faces says
  selected: null, // {person, index}: the range that I/O, loop and zoom act on
  job: null, // {id, source} of the running job
  faceOwners: [], // faces[i] of the last lipsync request -> {person, row}
  health: null, // the last GET /health
  loop: false, // play the selected range over and over
  zoomOn: null, // the person whose mouth the compare player zooms on
};

export const pct = (ms) => `${(100 * ms) / (state.durationMs || 1)}%`;

export function selectedRange() {
  const chosen = state.selected;
  if (!chosen || !chosen.person.ticked) return null;
  return chosen.person.ranges[chosen.index] || null;
}
