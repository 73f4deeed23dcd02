// Step 3's choices: per person a tick, their voice (stem and expressiveness, see stems.js) and the
// time ranges to lip-sync as number fields; I and O set the selected range's edges at the playhead.
import { make } from "./dom.js";
import { renderRangeBlocks, selectRange, setTicked } from "./timeline.js";
import { state, selectedRange } from "./state.js";

export function renderChoices() {
  const box = document.querySelector("#choices");
  box.replaceChildren();
  for (const p of state.people) {
    const tick = make("input", { type: "checkbox", checked: p.ticked });
    tick.addEventListener("change", () => setTicked(p, tick.checked));
    const who = make("span", { className: "who" }, p.id);
    who.style.color = p.color;
    const choice = make("div", { className: "choice" }, make("label", {}, tick, who));
    choice.dataset.person = p.id;
    if (p.ticked) {
      if (p.voice) choice.append(p.voice.box);
      p.ranges.forEach((range, index) => choice.append(rangeRow(p, range, index)));
      const add = make("button", { type: "button", className: "add-range" }, "Add range");
      add.addEventListener("click", () => {
        p.ranges.push({ start: 0, end: state.durationMs });
        selectRange(p, p.ranges.length - 1);
        renderChoices();
      });
      choice.append(add);
    }
    box.append(choice);
  }
}

function rangeRow(p, range, index) {
  const row = make("div", { className: "range-row field" });
  const chosen = state.selected && state.selected.person === p && state.selected.index === index;
  if (chosen) row.classList.add("selected");
  const input = (key) => {
    const field = make("input", { type: "number", step: "0.01", min: "0", className: key });
    field.value = (range[key] / 1000).toFixed(2);
    // Typing clears this row's old error at once (before any button is pressed), and the
    // commit on blur redraws only the lanes: nothing below moves between a press and its release.
    field.addEventListener("input", () => { row.classList.remove("invalid"); row.querySelector(".error").textContent = ""; });
    field.addEventListener("change", () => {
      const value = Number(field.value);
      if (field.value.trim() !== "" && Number.isFinite(value)) range[key] = Math.round(value * 1000);
      renderRangeBlocks();
    });
    field.addEventListener("focus", () => selectRange(p, index));
    return field;
  };
  const remove = make("button", { type: "button", title: "remove this range" }, "✕");
  remove.addEventListener("click", () => {
    p.ranges.splice(index, 1);
    if (state.selected && state.selected.person === p) state.selected = null;
    renderRangeBlocks();
    renderChoices();
  });
  const error = make("div", { className: "error", role: "alert" });
  row.append("from ", input("start"), " s to ", input("end"), " s ", remove, error);
  Object.assign(row, { range, person: p, index });
  return row;
}

// I / O: the selected range starts at the playhead's frame, or ends after it. Returns a message
// when there is nothing to set (no range selected) or the edge would cross the other.
export function setRangeEdge(edge, frameStartMs, frameEndMs) {
  const range = selectedRange();
  if (!range) return "select a range first: click it on a lane or in its row";
  if (edge === "start") {
    if (frameStartMs >= range.end) return "the in point must come before the range's out point";
    range.start = frameStartMs;
  } else {
    if (frameEndMs <= range.start) return "the out point must come after the range's in point";
    range.end = Math.min(frameEndMs, state.durationMs);
  }
  renderRangeBlocks();
  renderChoices();
  return null;
}
