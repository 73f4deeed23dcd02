#!/usr/bin/env node
// A client of the lip-sync HTTP API: Node >= 18, no dependencies beyond Node's own fetch.
//
//   node scripts/test-api.mjs --video URL [--audio URL] [--upload-url URL] [--auto] [--refs characters.json]
//        [--voices voices.json] [--expressiveness 0.5] [--server http://localhost:8000] [--sample-fps 3]
//        [--output FILE [--download-url URL]] [--sync-mode silence] [--json] [--timeout 3600]
//
// --auto: calls /detect-faces, builds faces[] itself (one entry per run of sampled frames where a
//   person is present and syncable: recognised characters when --refs is given, else every face_N;
//   bbox of the first frame of the run; the same rule as jobs/auto.py), then calls /lipsync.
// Without --auto it sends `auto: true` and the server picks the faces.
// --refs: a JSON file with the /detect-faces `characters` list [{id, name, reference_image_url}];
//   sent to /lipsync too (who auto mode picks, and names for the people not requested).
// --voices: a JSON file [{character_id, audio_url, audio_offset_ms?, expressiveness?}]: each
//   person's own dialogue stem (faces[].audio_url); --audio (the final mix) may then be left out
//   and the server mixes the stems. --expressiveness: how wide every mouth moves, 0-1.
// --upload-url: where the server PUTs the result. Without it the server keeps the result for a
//   while (`result_url`); --output FILE downloads it from there, or from --download-url (e.g. a
//   presigned GET URL of the upload).
// Prints a per-face summary (segments, synced %, skip reasons). Exit 0 on success, 1 when the
// server or a download fails (with the server's message), 2 on bad usage.
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";

const USAGE = "usage: node scripts/test-api.mjs --video URL [--audio URL] [--upload-url URL] [--auto] " +
  "[--refs characters.json] [--voices voices.json] [--expressiveness N] [--server URL] [--sample-fps N] " +
  "[--output FILE [--download-url URL]] [--sync-mode MODE] [--json]";

class Failure extends Error {
  constructor(message, code = 1) {
    super(message);
    this.code = code;
  }
}

function options(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        server: { type: "string", default: "http://localhost:8000" },
        video: { type: "string" },
        audio: { type: "string" },
        "upload-url": { type: "string" },
        refs: { type: "string" },
        voices: { type: "string" },
        expressiveness: { type: "string" },
        auto: { type: "boolean", default: false },
        "download-url": { type: "string" },
        output: { type: "string" },
        "sample-fps": { type: "string", default: "3" },
        "sync-mode": { type: "string", default: "silence" },
        json: { type: "boolean", default: false },
        timeout: { type: "string", default: "3600" },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (err) {
    throw new Failure(`${err.message}\n${USAGE}`, 2);
  }
  if (parsed.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (!parsed.video) throw new Failure(`--video is required\n${USAGE}`, 2);
  if (!parsed.audio && !parsed.voices) {
    throw new Failure(`--audio is required unless --voices gives every person their own stem\n${USAGE}`, 2);
  }
  if (parsed["download-url"] && !parsed.output) throw new Failure("--download-url needs --output FILE", 2);
  if (parsed.output && parsed["upload-url"] && !parsed["download-url"]) {
    throw new Failure("with --upload-url the result is not kept on the server: give --download-url to fetch it", 2);
  }
  let expressiveness;
  if (parsed.expressiveness !== undefined) {
    expressiveness = Number(parsed.expressiveness);
    if (!(expressiveness >= 0 && expressiveness <= 1)) throw new Failure("--expressiveness must be in [0, 1]", 2);
  }
  const sampleFps = Number(parsed["sample-fps"]);
  if (!(sampleFps > 0 && sampleFps <= 60)) throw new Failure("--sample-fps must be a number in (0, 60]", 2);
  const timeoutS = Number(parsed.timeout);
  if (!(timeoutS > 0)) throw new Failure("--timeout must be a positive number of seconds", 2);
  return { ...parsed, server: parsed.server.replace(/\/+$/, ""), sampleFps, timeoutS, expressiveness };
}

function readVoices(path) {
  if (!path) return [];
  let voices;
  try {
    voices = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new Failure(`--voices ${path}: cannot read JSON (${err.message})`, 2);
  }
  if (!Array.isArray(voices) || voices.some((v) => !v || v.character_id === undefined || !v.audio_url)) {
    throw new Failure(`--voices ${path}: expected a list of {character_id, audio_url, audio_offset_ms?, ` +
      "expressiveness?}", 2);
  }
  return voices;
}

// A faces[] entry with its person's stem fields from --voices, if they have one.
function withVoice(face, voices) {
  const voice = voices.find((v) => String(v.character_id) === face.character_id);
  if (!voice) return face;
  const { character_id: _, ...fields } = voice;
  return { ...face, ...fields };
}

function readCharacters(path) {
  if (!path) return [];
  let characters;
  try {
    characters = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new Failure(`--refs ${path}: cannot read JSON (${err.message})`, 2);
  }
  if (!Array.isArray(characters) || characters.some((c) => !c || !c.id || !c.reference_image_url)) {
    throw new Failure(`--refs ${path}: expected a list of {id, name, reference_image_url}`, 2);
  }
  return characters;
}

async function call(opts, path, body) {
  const url = `${opts.server}${path}`;
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(opts.timeoutS * 1000),
    });
  } catch (err) {
    throw new Failure(`cannot reach the server at ${url}: ${err.cause?.message ?? err.message}`);
  }
  const text = await response.text();
  let payload;
  try {
    payload = JSON.parse(text);
  } catch {
    throw new Failure(`${path} answered HTTP ${response.status} with a body that is not JSON: ${text.slice(0, 200)}`);
  }
  if (!response.ok || payload.success === false) {
    const retry = response.headers.get("retry-after");
    throw new Failure(`${path} failed (HTTP ${response.status}): ${payload.error_message ?? text}` +
      (retry ? ` (retry after ${retry} s)` : ""));
  }
  return payload;
}

// faces[] from a /detect-faces result: the rule of stream/auto.py faces_from_detection.
function facesFromDetection(result, recognisedOnly) {
  const stepMs = 1000 / result.sample_fps;
  const runs = new Map();
  for (const frame of result.frames) {
    for (const face of frame.faces) {
      const person = face.character_id;
      if (recognisedOnly && person.startsWith("face_") && !result.characters_detected.includes(person)) continue;
      if (!face.syncable) continue;
      if (!runs.has(person)) runs.set(person, []);
      const personRuns = runs.get(person);
      const last = personRuns[personRuns.length - 1];
      const t = frame.timestamp_ms;
      if (last && t - last.end <= 1.5 * stepMs) last.end = t;
      else personRuns.push({ start: t, end: t, bbox: face.bbox });
    }
  }
  const faces = [];
  for (const [person, personRuns] of runs) {
    for (const run of personRuns) {
      faces.push({
        character_id: person,
        bbox: run.bbox.map(Number),
        start_time_ms: run.start,
        end_time_ms: Math.min(run.end + stepMs, result.video_duration_ms),
      });
    }
  }
  return faces.sort((a, b) => a.start_time_ms - b.start_time_ms || (a.character_id < b.character_id ? -1 : 1));
}

const seconds = (ms) => (ms / 1000).toFixed(2);

function describeDetection(result) {
  const people = new Set(result.frames.flatMap((f) => f.faces.map((face) => face.character_id)));
  console.log(`detect-faces: ${result.frames.length} frames at ${result.sample_fps} fps of a ` +
    `${result.frame_width}x${result.frame_height}, ${seconds(result.video_duration_ms)} s video; ` +
    `people seen: ${[...people].join(", ") || "none"}; recognised: ` +
    `${result.characters_detected.join(", ") || "none"} (${result.face_backend})`);
}

function describeLipsync(result, requested) {
  const out = result.output;
  console.log(`lipsync: engine ${result.engine}, output ${out.width}x${out.height}, ${seconds(out.duration_ms)} s, ` +
    `${out.fps} fps, ${out.file_size_bytes} bytes; ${result.faces.processed} face range(s) synced, ` +
    `${result.faces.unknown} other person(s) left untouched; total ${seconds(result.timing.total_ms)} s`);
  result.faces.results.forEach((face, index) => {
    const summary = face.summary;
    const percent = summary.total_ms ? (100 * summary.synced_ms) / summary.total_ms : 0;
    const asked = requested?.[index];
    const range = (asked ? ` ${seconds(asked.start_time_ms)}-${seconds(asked.end_time_ms)} s` : "") +
      (asked?.audio_url ? " (own stem)" : "");
    const reasons = [...new Set(face.segments.filter((s) => !s.synced).map((s) => s.skip_reason))];
    console.log(`  ${face.character_id}${range}: synced ${percent.toFixed(1)}% ` +
      `(${summary.synced_ms} of ${summary.total_ms} ms), ${face.segments.length} segment(s)` +
      (reasons.length ? `, skipped: ${reasons.join(", ")}` : ""));
    for (const segment of face.segments) {
      const what = segment.synced ? `synced   quality ${segment.avg_quality}` : `skipped  ${segment.skip_reason}`;
      console.log(`    ${seconds(segment.start_ms).padStart(7)}-${seconds(segment.end_ms).padStart(7)} s  ${what}`);
    }
  });
  if (result.expressiveness_applied !== undefined) {
    console.log(`  expressiveness applied: ${result.expressiveness_applied ? "yes" : "no"}`);
  }
  for (const warning of result.warnings ?? []) console.log(`  warning: ${warning}`);
  if (result.result_url) {
    const left = result.result_expires_at ? ` (kept until ${new Date(result.result_expires_at * 1000).toISOString()})` : "";
    console.log(`result kept on the server: ${result.result_url}${left}`);
  }
}

async function download(url, output, timeoutS) {
  let response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(timeoutS * 1000) });
  } catch (err) {
    throw new Failure(`cannot download the result from ${url.split("?")[0]}: ${err.cause?.message ?? err.message}`);
  }
  if (!response.ok) {
    throw new Failure(`downloading the result failed (HTTP ${response.status}): ${(await response.text()).slice(0, 200)}`);
  }
  const bytes = Buffer.from(await response.arrayBuffer());
  writeFileSync(output, bytes);
  console.log(`downloaded ${bytes.length} bytes to ${output}`);
}

async function main() {
  const opts = options(process.argv.slice(2));
  const characters = readCharacters(opts.refs);
  const voices = readVoices(opts.voices);
  const body = { video_url: opts.video, sync_mode: opts["sync-mode"] };
  if (opts.audio) body.audio_url = opts.audio;
  if (opts["upload-url"]) body.upload_url = opts["upload-url"];
  if (characters.length) body.characters = characters;
  if (opts.expressiveness !== undefined) body.expressiveness = opts.expressiveness;
  let faces;
  if (opts.auto) {
    const detection = await call(opts, "/detect-faces",
      { video_url: opts.video, sample_fps: opts.sampleFps, characters });
    describeDetection(detection);
    faces = facesFromDetection(detection, characters.length > 0);
    if (!faces.length) {
      throw new Failure("--auto: /detect-faces found no syncable " +
        (characters.length ? "recognised character" : "face") + " to lip-sync in the video");
    }
    console.log(`faces to sync: ${faces.map((f) => `${f.character_id} ${seconds(f.start_time_ms)}-` +
      `${seconds(f.end_time_ms)} s`).join("; ")}`);
    faces = faces.map((face) => withVoice(face, voices));
    body.faces = faces;
  } else {
    body.auto = true;
    if (voices.length) body.faces = voices;
  }
  const result = await call(opts, "/lipsync", body);
  if (opts.json) console.log(JSON.stringify(result, null, 2));
  describeLipsync(result, faces);
  if (opts.output) {
    const from = opts["download-url"] ?? (result.result_url ? new URL(result.result_url, opts.server).href : null);
    if (!from) throw new Failure("the server kept no result to download (no result_url in its answer)");
    await download(from, opts.output, opts.timeoutS);
  }
}

main().catch((err) => {
  console.error(`error: ${err.message}`);
  process.exit(err instanceof Failure ? err.code : 1);
});
