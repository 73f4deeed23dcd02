// The keyboard, as in an editor: Space plays or pauses, ←/→ step a frame, Shift+←/→ a second,
// I/O set the selected range's in and out at the playhead, L loops it, B flips before/after.
// Keys act on the player last used (the preview, or the result); typing in a field is left alone.
import { toggleBeforeAfter } from "./compare.js";
import { setRangeEdge } from "./ranges.js";
import { state } from "./state.js";

const TYPING = "input:not([type=range]):not([type=checkbox]):not([type=button]), textarea, select, [contenteditable]";

// `players`: {preview: {transport, area}, result: {transport, area}}; `say(message)` shows a hint.
export function bindKeys(players, say) {
  let active = players.preview;
  for (const player of Object.values(players)) {
    for (const name of ["pointerdown", "focusin"]) player.area.addEventListener(name, () => { active = player; });
  }
  document.addEventListener("keydown", (event) => {
    if (!state.detection || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.closest && target.closest(TYPING)) return;
    const onButton = target.closest && target.closest("button, input[type=checkbox], a");
    const transport = active.transport;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    let handled = true;
    if (key === " " && !onButton) transport.toggle();
    else if (key === "ArrowLeft") transport.step(event.shiftKey ? -Math.round(transport.fps) : -1);
    else if (key === "ArrowRight") transport.step(event.shiftKey ? Math.round(transport.fps) : 1);
    else if (key === "i" || key === "o") {
      const frame = transport.frame;
      const problem = setRangeEdge(key === "i" ? "start" : "end", transport.frameStartMs(frame), transport.frameStartMs(frame + 1));
      say(problem || "");
    } else if (key === "l") setLoop(!state.loop);
    else if (key === "b" && active === players.result) toggleBeforeAfter();
    else handled = false;
    if (handled) event.preventDefault();
  });
}

export function setLoop(on) {
  state.loop = on;
  for (const box of document.querySelectorAll("input.loop")) box.checked = on;
}
