// The server's JSON API as the page uses it: same origin only, JSON bodies sent as
// application/json, uploads with the file's own type, jobs followed over Server-Sent Events.
import { humanBytes } from "./dom.js";

export class ApiError extends Error {
  constructor(payload, status) {
    super(payload.error_message || payload.error || `HTTP ${status}`);
    this.payload = payload;
    this.status = status;
  }
}

async function answer(response) {
  const payload = await response.json().catch(() => ({ error_message: `the server answered HTTP ${response.status}` }));
  if (!response.ok) throw new ApiError(payload, response.status);
  return payload;
}

export async function getJson(path) {
  return answer(await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } }));
}

export async function postJson(path, body) {
  return answer(await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  }));
}

export async function cancelJob(jobId) {
  return answer(await fetch(`/jobs/${encodeURIComponent(jobId)}`, { method: "DELETE", credentials: "same-origin" }));
}

// The Content-Type an upload is sent with: the file's own type (the server takes a video file
// chosen as audio for its sound track), or plain bytes when the browser knows none.
export function uploadType(file) {
  return file.type || "application/octet-stream";
}

// POST a local file to /uploads; resolves to the 201 body (url, media...). Progress goes to `status`.
export function uploadFile(file, kind, status) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/uploads?kind=${encodeURIComponent(kind)}&name=${encodeURIComponent(file.name)}`);
    xhr.setRequestHeader("Content-Type", uploadType(file));
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) status.textContent = `uploading ${Math.round((100 * event.loaded) / event.total)}%`;
    };
    xhr.onerror = () => reject(new ApiError({ error_message: `uploading ${file.name} failed: the connection broke` }, 0));
    xhr.onload = () => {
      let payload;
      try {
        payload = JSON.parse(xhr.responseText);
      } catch {
        payload = { error_message: `uploading ${file.name} failed (HTTP ${xhr.status})` };
      }
      if (xhr.status !== 201) {
        reject(new ApiError(payload, xhr.status));
        return;
      }
      const until = new Date(payload.expires_at * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      status.textContent = `uploaded ${humanBytes(payload.size_bytes)}, usable until ${until}`;
      status.dataset.url = payload.url;
      resolve(payload);
    };
    status.textContent = "uploading…";
    xhr.send(file);
  });
}

const PHASES = { fetch: "fetching inputs", detect: "finding faces", speakers: "finding who speaks" };

// One progress event as a line a person reads: "finding faces 12/25 frames (40%)".
export function progressText(p) {
  const phase = PHASES[p.phase] || p.phase || p.state;
  const unit = p.phase === "fetch" ? "files" : "frames";
  const count = p.frames_total ? ` ${p.frames_done}/${p.frames_total} ${unit}` : "";
  return `${phase}${count} (${Math.round(p.percent)}%)`;
}

async function pollJob(jobId) {
  for (;;) {
    const record = await getJson(`/jobs/${encodeURIComponent(jobId)}`);
    if (["succeeded", "failed", "cancelled"].includes(record.state)) return record;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

// Submit a job and follow its events; resolves to the final record. `onProgress(percent, text)`;
// `onStart({id, source})` once it is accepted (for the cancel button).
export async function runJob(kind, body, onProgress, onStart) {
  const submitted = await postJson(`/jobs/${kind}`, body);
  onProgress(0, "queued");
  return new Promise((resolve, reject) => {
    const source = new EventSource(submitted.events_url);
    onStart({ id: submitted.job_id, source });
    const finish = (record) => { source.close(); resolve(record); };
    source.addEventListener("progress", (event) => {
      const p = JSON.parse(event.data);
      onProgress(p.percent, progressText(p));
    });
    source.addEventListener("state", (event) => finish(JSON.parse(event.data)));
    source.addEventListener("error", (event) => {
      source.close();
      if (event.data) { // the server's own "error" event: the record expired
        reject(new ApiError({ error_message: JSON.parse(event.data).error }, 0));
        return;
      }
      pollJob(submitted.job_id).then(finish, reject);
    });
  });
}

export function recordError(record) {
  return new ApiError({ error_message: record.error || `job ${record.state}` }, record.error_status);
}
