// Sound made visible: decode the new audio or a stem with WebAudio in the browser (nothing is
// sent anywhere) and draw its waveform on the video's timeline, shifted by the stem's offset.

let context = null;

// The page's one AudioContext (decoding and the preview's sound share it).
export function audioContext() {
  if (!context) context = new AudioContext();
  return context;
}

// A File or a URL as an AudioBuffer. A URL must be readable by this page (same origin or CORS).
export async function decodeAudio(source) {
  let bytes;
  if (source instanceof Blob) {
    bytes = await source.arrayBuffer();
  } else {
    let response;
    try {
      response = await fetch(source, { mode: "cors", credentials: "omit" });
    } catch {
      throw new Error("the browser may not read this URL from here (no CORS); choose the file to see and hear it");
    }
    if (!response.ok) throw new Error(`fetching it for the waveform gave HTTP ${response.status}`);
    bytes = await response.arrayBuffer();
  }
  try {
    return await audioContext().decodeAudioData(bytes);
  } catch {
    throw new Error("this browser cannot decode its sound for a waveform (the server may still use it)");
  }
}

// Min and max of the channels' mean per bucket of `bucketMs` milliseconds: what a lane draws.
export function peaks(buffer, bucketMs = 5) {
  const perBucket = Math.max(1, Math.round((buffer.sampleRate * bucketMs) / 1000));
  const count = Math.ceil(buffer.length / perBucket);
  const low = new Float32Array(count);
  const high = new Float32Array(count);
  const channels = Array.from({ length: buffer.numberOfChannels }, (_, c) => buffer.getChannelData(c));
  for (let b = 0; b < count; b += 1) {
    let lo = 0;
    let hi = 0;
    const end = Math.min(buffer.length, (b + 1) * perBucket);
    for (let i = b * perBucket; i < end; i += 1) {
      let sum = 0;
      for (const data of channels) sum += data[i];
      const value = sum / channels.length;
      if (value < lo) lo = value;
      if (value > hi) hi = value;
    }
    low[b] = lo;
    high[b] = hi;
  }
  return { low, high, bucketMs: (perBucket * 1000) / buffer.sampleRate, durationMs: (buffer.length / buffer.sampleRate) * 1000 };
}

// Draw `wave` (from peaks) into `canvas`, whose width spans the video's `timelineMs`, starting at
// `offsetMs` on that timeline. Sets canvas.dataset.columns: how many pixel columns hold sound.
export function drawWave(canvas, wave, timelineMs, offsetMs, color) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  canvas.height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  canvas.dataset.columns = "0";
  if (!wave || !timelineMs) return;
  const middle = canvas.height / 2;
  const msPerColumn = timelineMs / canvas.width;
  let loudest = 1e-6;
  for (let b = 0; b < wave.high.length; b += 1) loudest = Math.max(loudest, wave.high[b], -wave.low[b]);
  const scale = (0.95 * middle) / loudest;
  g.fillStyle = color;
  let columns = 0;
  for (let x = 0; x < canvas.width; x += 1) {
    const from = Math.floor((x * msPerColumn - offsetMs) / wave.bucketMs);
    const to = Math.ceil(((x + 1) * msPerColumn - offsetMs) / wave.bucketMs);
    if (to <= 0 || from >= wave.high.length) continue;
    let lo = 0;
    let hi = 0;
    for (let b = Math.max(0, from); b < Math.min(wave.high.length, to); b += 1) {
      lo = Math.min(lo, wave.low[b]);
      hi = Math.max(hi, wave.high[b]);
    }
    const top = middle - hi * scale;
    const height = Math.max(1, (hi - lo) * scale);
    g.fillRect(x, top, 1, height);
    if (hi - lo > 0.02 * loudest) columns += 1;
  }
  canvas.dataset.columns = String(columns);
}
