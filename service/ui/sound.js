// Hear the new sound against the picture before rendering: decoded buffers (the new audio, or
// the stems at their offsets when there is none, as the server mixes them) played through WebAudio
// in step with a muted <video>: started at its time on play and seek, stopped on pause.
import { audioContext } from "./waveform.js";

export class SoundTrack {
  // `sources()` -> [{buffer, offsetMs}] placed on the video's timeline.
  constructor(video, sources) {
    this.video = video;
    this.sources = sources;
    this.nodes = [];
    this.enabled = true;
    this.startedAt = null; // {contextTime, videoTime} of the last start
    for (const name of ["pause", "seeking", "ended", "emptied"]) video.addEventListener(name, () => this.stop());
    video.addEventListener("playing", () => this.start());
    video.addEventListener("seeked", () => { if (!video.paused) this.start(); });
    video.addEventListener("timeupdate", () => this.keepInStep());
  }

  start() {
    this.stop();
    if (!this.enabled || this.video.paused) return;
    const context = audioContext();
    if (context.state === "suspended") context.resume();
    const at = this.video.currentTime;
    const now = context.currentTime + 0.02;
    for (const { buffer, offsetMs } of this.sources()) {
      const into = at - offsetMs / 1000; // seconds into this buffer at the video's time
      if (into >= buffer.duration) continue;
      const node = context.createBufferSource();
      node.buffer = buffer;
      node.connect(context.destination);
      if (into >= 0) node.start(now, into);
      else node.start(now - into);
      this.nodes.push(node);
    }
    this.startedAt = { contextTime: now, videoTime: at };
    this.video.dataset.sounds = String(this.nodes.length);
  }

  stop() {
    for (const node of this.nodes) {
      try { node.stop(); } catch { /* never started */ }
      node.disconnect();
    }
    this.nodes = [];
    this.startedAt = null;
    this.video.dataset.sounds = "0";
  }

  // Restart when the picture and the sound drift more than 80 ms apart (a stalled decode).
  keepInStep() {
    if (!this.startedAt || this.video.paused) return;
    const heard = this.startedAt.videoTime + (audioContext().currentTime - this.startedAt.contextTime);
    if (Math.abs(heard - this.video.currentTime) > 0.08 * this.video.playbackRate + 0.1) this.start();
  }

  setEnabled(enabled) {
    this.enabled = enabled;
    if (enabled) this.start();
    else this.stop();
  }
}
