// Frame-accurate transport for one <video>: play/pause, step a frame or a second, seek by the
// scrubber, a timecode with the frame number, and looping the selected range. Frames are
// numbered from 0 at the video's frame rate (state.fps); a seek lands in the middle of a frame.
import { state, selectedRange } from "./state.js";

const pad = (n) => String(n).padStart(2, "0");

// "00:00:01:12" (hours:minutes:seconds:frames) for frame `frame` at `fps`.
export function timecode(frame, fps) {
  const whole = Math.round(fps);
  const secondsTotal = Math.floor(frame / whole);
  const h = Math.floor(secondsTotal / 3600);
  const m = Math.floor((secondsTotal % 3600) / 60);
  return `${pad(h)}:${pad(m)}:${pad(secondsTotal % 60)}:${pad(frame % whole)}`;
}

export class Transport {
  // video; scrub (range input), clock (element), playButton (optional: its text follows the state),
  // onTime(seconds): called on every new time (the overlay, the playheads); playLabel: its idle text.
  constructor({ video, scrub, clock, playButton, playLabel = "Play", onTime = () => {} }) {
    Object.assign(this, { video, scrub, clock, playButton, playLabel, onTime });
    this.frameRequest = null;
    for (const name of ["timeupdate", "seeked", "loadedmetadata"]) video.addEventListener(name, () => this.update());
    video.addEventListener("play", () => { this.setButton(); this.watch(); });
    video.addEventListener("pause", () => this.setButton());
    video.addEventListener("ended", () => this.setButton());
    scrub.addEventListener("input", () => this.seekFrame(this.frameAt(Number(scrub.value))));
    if (playButton) playButton.addEventListener("click", () => this.toggle());
  }

  get fps() { return state.fps; }

  get frameCount() { return Math.max(1, Math.round((state.durationMs / 1000) * this.fps)); }

  frameAt(seconds) { return Math.max(0, Math.min(this.frameCount - 1, Math.floor(seconds * this.fps + 1e-4))); }

  get frame() { return this.frameAt(this.video.currentTime); }

  // Milliseconds where frame `n` starts.
  frameStartMs(n) { return Math.round((n * 1000) / this.fps); }

  setup() {
    this.scrub.min = "0";
    this.scrub.max = String(Math.max(0, (this.frameCount - 0.5) / this.fps));
    this.scrub.step = String(1 / this.fps);
    this.update();
  }

  seekFrame(n) {
    const frame = Math.max(0, Math.min(this.frameCount - 1, n));
    this.video.currentTime = (frame + 0.5) / this.fps;
    this.update(frame);
  }

  seekMs(ms) { this.seekFrame(this.frameAt(ms / 1000)); }

  step(frames) {
    if (!this.video.paused) this.video.pause();
    this.seekFrame(this.frame + frames);
  }

  toggle() {
    if (this.video.paused) {
      const range = state.loop ? selectedRange() : null;
      if (range && (this.video.currentTime * 1000 < range.start || this.video.currentTime * 1000 >= range.end)) {
        this.video.currentTime = range.start / 1000;
      }
      this.video.play().catch(() => {});
    } else {
      this.video.pause();
    }
  }

  setButton() {
    if (this.playButton) this.playButton.textContent = this.video.paused ? this.playLabel : "Pause";
  }

  // While playing: redraw every animation frame, and jump back at the end of a looped range.
  watch() {
    if (this.frameRequest !== null) return;
    const tick = () => {
      this.frameRequest = null;
      if (this.video.paused) return;
      const range = state.loop ? selectedRange() : null;
      if (range && this.video.currentTime * 1000 >= range.end) {
        this.video.currentTime = range.start / 1000;
        this.video.dataset.loops = String(Number(this.video.dataset.loops || 0) + 1);
      }
      this.update();
      this.frameRequest = requestAnimationFrame(tick);
    };
    this.frameRequest = requestAnimationFrame(tick);
  }

  update(frame = this.frame) {
    const seconds = this.video.currentTime;
    const fpsNote = state.fpsKnown ? "" : ` (${this.fps} fps assumed)`;
    this.clock.textContent = `${timecode(frame, this.fps)} · frame ${frame} of ${this.frameCount}${fpsNote}`;
    this.clock.dataset.frame = String(frame);
    this.scrub.value = String(seconds);
    this.onTime(seconds);
  }
}
