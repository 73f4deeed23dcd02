// The page's one shared state; modules read and change it, and redraw what they own.

export const state = {
  inputs: {
    video: { pending: null, preview: null, fps: null }, // fps from the upload's probe when a file was chosen
    audio: { pending: null, source: null }, // source: the File or URL the waveform is decoded from
  },
  detection: null, // the detect-faces result
  request: null, // the detect-faces request it answers (sample_fps, similarity_threshold)
  audioLane: null, // {note, canvas, track, playhead} of the new audio lane
  people: [], // {id, color, samples: [{t, face}], ranges: [{start, end}], ticked, voice, track, ...}
  durationMs: 0,
  stepMs: 333, // ms between detect-faces samples
  fps: 25, // the video's frame rate: frame stepping, timecodes, I/O points
  fpsKnown: false,
  selected: null, // {person, index}: the range that I/O, loop and zoom act on
  job: null, // {id, source} of the running job
  faceOwners: [], // faces[i] of the last lipsync request -> {person, row}
  health: null, // the last GET /health
  loop: false, // play the selected range over and over
};

export const durationS = () => state.durationMs / 1000;
export const pct = (ms) => `${(100 * ms) / (state.durationMs || 1)}%`;

export function selectedRange() {
  const chosen = state.selected;
  if (!chosen || !chosen.person.ticked) return null;
  return chosen.person.ranges[chosen.index] || null;
}
