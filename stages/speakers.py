"""Active speakers: who speaks when, from the original video and its own audio (Light-ASD).

The detect pass gives face tracks at the sample rate (e.g. 3 fps). Light-ASD wants each
track at 25 fps: boxes are interpolated onto the 25 fps grid (`resample_track`), and
SpeakerCropStage cuts, for every grid time, the 112x112 grey crop from the decoded frame
on screen at that time, whatever the video's own rate. Scores come per track and frame
(> 0: speaking, by Light-ASD's own threshold).

`speaking` (0-1) is the probability that a face is *the* active speaker: its own
speaking probability (logistic of its score) times its share among the faces on screen
(softmax of their scores at temperature 0.25, sharp enough that two moving mouths do not
split the credit evenly; measured on two side-by-side talking clips with one soundtrack). A face whose mouth moves while someone else's voice plays then
scores low, which a fixed threshold on the raw score cannot do. The active speaker of a
grid frame is the face with the highest score, when that score is > 0; runs shorter than
200 ms are dropped and gaps under 200 ms are bridged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.asd_crop import (
    CROP_SIZE,
    ResampledTrack,
    crop_face,
    resample_track,
    smooth_windows,
)
from stream.frame import Frame
from stream.stage import Stage

GRID_MS = 40.0  # Light-ASD runs at 25 fps
MIN_RUN_FRAMES = 5  # 200 ms
SHARE_TEMPERATURE = 0.25


@dataclass
class TrackSamples:
    """One face track as the detect pass saw it: times (ms), boxes [x1,y1,x2,y2], names."""

    track_id: int
    times_ms: list[float]
    boxes: list[list[float]]
    names: list[str]

    @property
    def name(self) -> str:
        """The track's most frequent name (reference id or face_N)."""
        return max(set(self.names), key=self.names.count)


def tracks_from_frames(frames: list[dict]) -> dict[int, TrackSamples]:
    """Group detect-faces frames (JSON) into tracks by their track_id."""
    tracks: dict[int, TrackSamples] = {}
    for frame in frames:
        for face in frame["faces"]:
            x, y, w, h = face["bbox"]
            track = tracks.setdefault(face["track_id"], TrackSamples(face["track_id"], [], [], []))
            track.times_ms.append(frame["timestamp_ms"])
            track.boxes.append([x, y, x + w, y + h])
            track.names.append(face["character_id"])
    return tracks


class SpeakerCropStage(Stage):
    """Cuts every resampled track's crop at each 25 fps grid time from the frame on screen."""

    name = "asd_crop"

    def __init__(self, tracks: dict[int, ResampledTrack]) -> None:
        self.tracks = {tid: t for tid, t in tracks.items() if len(t)}
        self.windows = {tid: smooth_windows(t.boxes) for tid, t in self.tracks.items()}
        self.crops = {tid: np.zeros((len(t), CROP_SIZE, CROP_SIZE), np.uint8) for tid, t in self.tracks.items()}
        self.last_grid = max((int(t.frame_indices[-1]) for t in self.tracks.values()), default=-1)
        self._next_grid = 0
        self._previous: Frame | None = None

    def process(self, frame: Frame):
        if self._previous is not None:
            self._cut(self._previous, frame.time_ms)
        self._previous = frame
        return ()

    def flush(self):
        if self._previous is not None:
            self._cut(self._previous, float("inf"))
        self._previous = None
        return ()

    def _cut(self, frame: Frame, until_ms: float) -> None:
        """Grid times before `until_ms` (the next frame's time) show `frame`."""
        while self._next_grid <= self.last_grid and self._next_grid * GRID_MS + 0.5 < until_ms:
            k = self._next_grid
            for tid, track in self.tracks.items():
                first = int(track.frame_indices[0])
                if first <= k < first + len(track):
                    self.crops[tid][k - first] = crop_face(frame.image, self.windows[tid][k - first])
            self._next_grid += 1


@dataclass
class SpeakerScores:
    """Per track: its 25 fps grid frames, raw scores and the `speaking` probability."""

    frames: dict[int, np.ndarray]
    scores: dict[int, np.ndarray]
    speaking: dict[int, np.ndarray]

    def speaking_at(self, track_id: int, time_ms: float) -> float | None:
        frames = self.frames.get(track_id)
        if frames is None or not len(frames):
            return None
        k = int(np.clip(round(time_ms / GRID_MS) - frames[0], 0, len(frames) - 1))
        return float(self.speaking[track_id][k])


def score_tracks(model, tracks: dict[int, ResampledTrack], crops: dict[int, np.ndarray],
                 mfcc: np.ndarray) -> SpeakerScores:
    """Light-ASD scores (smoothed over 5 frames) and the competitive `speaking` probability."""
    from models.light_asd import smooth_scores

    frames, scores = {}, {}
    for tid, track in tracks.items():
        if tid not in crops:
            continue
        first = int(track.frame_indices[0])
        audio = mfcc[4 * first:4 * (first + len(track))]
        scores[tid] = smooth_scores(model.score_track(crops[tid], audio))
        frames[tid] = track.frame_indices
    speaking = {tid: np.zeros(len(s), np.float32) for tid, s in scores.items()}
    last = max((int(f[-1]) for f in frames.values()), default=-1)
    for k in range(last + 1):
        present = [(tid, int(k - frames[tid][0])) for tid in scores if frames[tid][0] <= k <= frames[tid][-1]]
        if not present:
            continue
        values = np.array([scores[tid][i] for tid, i in present], dtype=np.float64)
        share = np.exp((values - values.max()) / SHARE_TEMPERATURE)
        share /= share.sum()
        own = 1.0 / (1.0 + np.exp(-values))
        for (tid, i), p in zip(present, own * share):
            speaking[tid][i] = p
    return SpeakerScores(frames, scores, speaking)


def speaker_ranges(result: SpeakerScores, names: dict[int, str]) -> list[dict]:
    """[{character_id, segments: [{start_ms, end_ms}]}]: when each person is the active speaker."""
    last = max((int(f[-1]) for f in result.frames.values()), default=-1)
    speaker_at: list[str | None] = []
    for k in range(last + 1):
        best, best_score = None, 0.0
        for tid, frames in result.frames.items():
            if frames[0] <= k <= frames[-1]:
                score = float(result.scores[tid][k - frames[0]])
                if score > best_score:
                    best, best_score = names[tid], score
        speaker_at.append(best)
    runs: dict[str, list[list[int]]] = {}
    for k, person in enumerate(speaker_at):
        if person is None:
            continue
        person_runs = runs.setdefault(person, [])
        if person_runs and k - person_runs[-1][1] <= MIN_RUN_FRAMES:
            person_runs[-1][1] = k
        else:
            person_runs.append([k, k])
    out = []
    for person, person_runs in runs.items():
        segments = [{"start_ms": int(a * GRID_MS), "end_ms": int((b + 1) * GRID_MS)}
                    for a, b in person_runs if b - a + 1 >= MIN_RUN_FRAMES]
        if segments:
            out.append({"character_id": person, "segments": segments})
    return out


def resample_tracks(tracks: dict[int, TrackSamples]) -> dict[int, ResampledTrack]:
    return {tid: resample_track(t.times_ms, t.boxes) for tid, t in tracks.items()}
