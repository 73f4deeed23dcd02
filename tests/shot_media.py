"""Edited test videos: shots of sample clips placed on a flat set, joined by hard cuts, fades or
dissolves; and uncut ones encoded with many keyframes.

Each shot lists who is where; `edited_video` writes the MP4 and returns the first frame
index of every shot after the first, which is what a shot detector must find.
`uncut_video` writes one long shot with the encoder's keyframes where asked (periodic or
scene-adaptive, at a given crf): a keyframe's quality pulse must not read as a cut.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from tests.media import write_video


@dataclass
class Person:
    """One clip in a shot: frames (RGB, all the same size), top-left x, y (px), first frame."""

    name: str
    frames: list[np.ndarray]
    x: int
    y: int
    offset: int = 0

    def box(self) -> tuple[int, int, int, int]:
        h, w = self.frames[0].shape[:2]
        return self.x, self.y, w, h


@dataclass
class Shot:
    seconds: float
    people: list[Person] = field(default_factory=list)
    fade_out_frames: int = 0
    """Frames at the end of the shot that fade to black (a fade-out, then the next shot)."""
    dissolve_frames: int = 0
    """Frames of a dissolve from the shot before into this one (0: a hard cut or a fade).
    The dissolve is centred on where the hard cut would be: the shot before runs on into
    it and this shot starts in it, each for half of it."""


def _bounced(index: int, length: int) -> int:
    """Frame `index` of a clip played forwards, backwards, forwards... (no jump at its ends)."""
    period = max(1, 2 * length - 2)
    index %= period
    return index if index < length else period - index


def shot_frames(shot: Shot, width: int, height: int, fps: int, start: int, count: int | None = None,
                lead: int = 0):
    """The shot's canvases; clips play from their offset, continuing from `start` (frame index),
    and play backwards at their end (a clip that jumped back to its start would be a cut).
    count: frames to make (default: the shot's length), of which `lead` come before the shot's
    own start (in a dissolve into it); the fade-out ends the shot's own length."""
    length = int(round(shot.seconds * fps))
    count = length if count is None else count
    for k in range(count):
        canvas = np.full((height, width, 3), 90, np.uint8)
        for person in shot.people:
            image = person.frames[_bounced(start + k + person.offset, len(person.frames))]
            h, w = image.shape[:2]
            canvas[person.y:person.y + h, person.x:person.x + w] = image
        left = lead + length - k
        if 0 < left <= shot.fade_out_frames:  # frames past the shot's length (in a dissolve) stay lit
            canvas = (canvas * ((left - 1) / shot.fade_out_frames)).astype(np.uint8)
        yield canvas


def edited_video(path: Path, shots: list[Shot], width: int, height: int, fps: int = 25) -> list[int]:
    """Write the shots one after another; returns the first frame index of shots 2, 3, ...
    (after a fade-out, its last frame: the black one; in a dissolve, its first frame where
    the new shot weighs at least as much as the old, the dissolve's middle)."""
    lengths = [int(round(shot.seconds * fps)) for shot in shots]
    starts = [sum(lengths[:k]) for k in range(len(shots))]
    blends = {}  # frame index -> (shot before, weight of the new shot), inside dissolves
    for number in range(1, len(shots)):
        count = shots[number].dissolve_frames
        first = starts[number] - count // 2
        for j in range(count):
            blends[first + j] = (number - 1, (j + 1) / (count + 1))
    canvases: dict[tuple[int, int], np.ndarray] = {}
    for number, shot in enumerate(shots):
        lead = shot.dissolve_frames // 2 if number else 0
        tail = shots[number + 1].dissolve_frames - shots[number + 1].dissolve_frames // 2 \
            if number + 1 < len(shots) else 0
        first = starts[number] - lead
        for k, canvas in enumerate(shot_frames(shot, width, height, fps, first, lead + lengths[number] + tail, lead)):
            canvases[(number, first + k)] = canvas
    frames = []
    for index in range(sum(lengths)):
        number = max(k for k in range(len(shots)) if starts[k] <= index)
        if index in blends:
            before, weight = blends[index]
            mixed = (1 - weight) * canvases[(before, index)] + weight * canvases[(before + 1, index)]
            frames.append(np.round(mixed).astype(np.uint8))
        else:
            frames.append(canvases[(number, index)])
    write_video(path, frames, fps=fps, crf=20)
    return [starts[k] - 1 if shots[k - 1].fade_out_frames else starts[k] for k in range(1, len(shots))]


def shot_at(cuts: list[int], frame: int) -> int:
    """The true shot index of a frame."""
    return sum(1 for cut in cuts if frame >= cut)


@dataclass
class Keyframes:
    """How the encoder places keyframes: every `gop` frames (scene_adaptive False: x264's
    scenecut off), or x264's own choice at scene changes within `gop` (scenecut 40, its default)."""

    gop: int = 250
    scene_adaptive: bool = False
    crf: int = 23
    preset: str = "veryfast"

    def options(self) -> dict:
        params = "scenecut=40:keyint-min=10" if self.scene_adaptive else "scenecut=0"
        return {"crf": str(self.crf), "preset": self.preset, "g": str(self.gop), "x264-params": params}


def uncut_video(path: Path, people: list[Person], width: int, height: int, frames: int,
                keyframes: Keyframes, hold: int = 1, fps: int = 25) -> list[int]:
    """One shot of `frames` frames on a set lit by a horizontal gradient; each clip frame is
    held `hold` frames (hold 4: a near-still picture, where a keyframe's quality pulse
    stands out most). Returns the frame indices of the encoder's keyframes."""
    ramp = np.linspace(60, 140, width).astype(np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = keyframes.options()
        for k in range(frames):
            canvas = np.full((height, width, 3), 90, np.uint8)
            canvas[..., 1] = ramp
            for person in people:
                image = person.frames[_bounced(k // hold + person.offset, len(person.frames))]
                h, w = image.shape[:2]
                canvas[person.y:person.y + h, person.x:person.x + w] = image
            out.mux(stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        out.mux(stream.encode(None))
    with av.open(str(path)) as container:
        return [k for k, frame in enumerate(container.decode(video=0)) if frame.key_frame]
