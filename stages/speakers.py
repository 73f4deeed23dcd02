"""Active speakers: who speaks when, from the original video and its own audio (Light-ASD).

The detect pass gives face tracks at the sample rate (e.g. 3 fps). Light-ASD was trained on
face tracks at 25 fps: boxes are interpolated onto the 25 fps grid (`resample_track`), and
SpeakerCropStage, on the frame on screen at every grid time (whatever the video's own
rate), first fits the face again from its interpolated box with the backend's cheap
landmark path (`refine`, ~2 ms a face; three fits from the line, one when the last grid
frame's fit says where the face is off it), so each crop follows the face as a 25 fps track
would, not a straight line between samples a third of a second apart; then it cuts the
112x112 grey crop from the boxes median-smoothed over 13 grid frames (6 frames behind).
Scores come per track and frame (> 0: speaking, by Light-ASD's own threshold).
Crops go to the scorer in chunks of CHUNK_FRAMES grid frames (60 s) as they are cut, through
a bounded queue (`TrackScorer`): the memory held is a few chunks, whatever the video's
length, and each chunk scores as it would within the whole track.
A track's samples are grouped by name too (`tracks_from_frames`): a sample named as
someone else than the rest of its track (a dissolve the shot detector missed, say) starts
a track of its own, so one person's track never carries another person's face.

`speaking` (0-1) is the probability that a face is *the* active speaker: its own
speaking probability (logistic of its score) times its share among the faces on screen
(softmax of their scores at temperature 0.25, sharp enough that two moving mouths do not
split the credit evenly; measured on two side-by-side talking clips with one soundtrack). A face whose mouth moves while someone else's voice plays then
scores low, which a fixed threshold on the raw score cannot do. The active speaker of a
grid frame is the face with the highest score, when that score is > 0 (> LONE_SPEAKER_SCORE
for the only face on screen); runs shorter than 200 ms are dropped and gaps under 200 ms
are bridged.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from models.asd_crop import (
    CROP_SIZE,
    SMOOTH_FRAMES,
    ResampledTrack,
    crop_face,
    resample_track,
    smooth_windows,
)
from models.faces.face import iou
from stream.frame import Frame
from stream.stage import Stage

GRID_MS = 40.0  # Light-ASD runs at 25 fps
MFCC_PER_FRAME = 4  # MFCC frames (models.mfcc.asd_mfcc, 100 a second) per grid frame
MIN_RUN_FRAMES = 5  # 200 ms
SHARE_TEMPERATURE = 0.25
LONE_SPEAKER_SCORE = -0.8
"""Light-ASD score (smoothed) from which the only face on screen counts as speaking. With
no one else to hear, a soft "speaking" is enough: a man talking all through d12 scores
-0.7..+0.4 (only 22% of it above 0), while a silent face under a voice-over or a laugh
without speech scores -1 to -3."""


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


def speaker_track_key(face: dict) -> str:
    """A speaker track is one face track while it is named as one person: "track_id:name"."""
    return f"{face['track_id']}:{face['character_id']}"


def tracks_from_frames(frames: list[dict]) -> dict[str, TrackSamples]:
    """Group detect-faces frames (JSON) into speaker tracks (`speaker_track_key`): a sample
    joins its face track only while it is named as the same person."""
    tracks: dict[str, TrackSamples] = {}
    for frame in frames:
        for face in frame["faces"]:
            x, y, w, h = face["bbox"]
            track = tracks.setdefault(speaker_track_key(face), TrackSamples(face["track_id"], [], [], []))
            track.times_ms.append(frame["timestamp_ms"])
            track.boxes.append([x, y, x + w, y + h])
            track.names.append(face["character_id"])
    return tracks


Refine = Callable[[np.ndarray, list[np.ndarray]], list[np.ndarray]]
"""(RGB frame, boxes [x1, y1, x2, y2]) -> the faces' boxes fitted again there."""
REFINE_PASSES = 3
"""Landmark fits per face and grid frame from the interpolated box, each from the last
one's box: one fit corrects a fraction of a large offset (the line between samples misses
a swaying head by 30-50 px). They stop once no box moved more than REFINE_SETTLED of its
width in the last one (a converged fit stays put)."""
REFINE_FOLLOWED_PASSES = 1
"""Fits when every face present was fitted on the last grid frame too: the first then starts
from the interpolated box moved by that frame's correction (the head's offset from the line
changes little in 40 ms), as the track stage follows a face from its last box. On a head
swaying 40 px at 3 fps samples: 1 fit a box instead of 3, the box centres as close to a
detection's (0.1 px mean, 0.4 px at most); on the 10 s two-face benchmark input 490 fits
instead of 1,458."""
REFINE_SETTLED = 0.01
REFINE_MIN_IOU = 0.3
"""A refined box overlapping its interpolated box less than this is a failed fit (kept out)."""
CHUNK_FRAMES = 1500
"""Grid frames (60 s at 25 fps) of a track's crops handed to the scorer at a time. A multiple
of Light-ASD's window period (`models.light_asd.ActiveSpeakerModel.window_period_frames`:
its 1..6 s windows tile a track from its first frame, so none crosses a multiple of 60 s),
so each chunk scores exactly as it does within the whole track. 112x112 grey is 12.5 KB a
frame: 18.8 MB a chunk, against 1.1 GB for an hour of one face held whole."""

Chunk = Callable[[object, int, np.ndarray], None]
"""(track id, index of the chunk's first frame in the track, its crops [n, 112, 112] uint8)."""


class SpeakerCropStage(Stage):
    """Cuts every resampled track's crop at each 25 fps grid time from the frame on screen,
    from boxes fitted again on that frame when `refine` is given (see the module's text).

    With `on_chunk`, a track's crops are handed out `chunk_frames` at a time as each chunk
    is full (`TrackScorer.submit_chunk` scores them beside the pass) and not kept: the stage
    holds at most one partly cut chunk per track on screen (`buffered_frames`). Without it,
    every track's crops are kept whole in `crops` (short clips, tests). `on_done(track id)`
    is called once a track's last crop is cut."""

    name = "asd_crop"

    def __init__(self, tracks: dict, refine: Refine | None = None,
                 on_done: Callable[[object], None] | None = None, on_chunk: Chunk | None = None,
                 chunk_frames: int = CHUNK_FRAMES) -> None:
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.tracks = {tid: t for tid, t in tracks.items() if len(t)}
        self.refine = refine
        self.on_done = on_done
        self.on_chunk = on_chunk
        self.chunk_frames = chunk_frames
        self.boxes = {tid: t.boxes.astype(np.float32).copy() for tid, t in self.tracks.items()}
        self.crops: dict = {}
        """Track id -> all its crops [M, 112, 112] uint8, once cut; only without `on_chunk`."""
        self.buffered_frames = 0
        """Crops held now in chunks being cut (12.5 KB each)..."""
        self.peak_buffered_frames = 0
        """...and the most held at once during the pass."""
        self._chunks: dict = {}  # track id -> (first index, crops) of its chunk being cut
        self._spans = _Spans({tid: t.frame_indices for tid, t in self.tracks.items()})
        self.last_grid = self._spans.last
        self.refined = 0
        """Boxes fitted again on their grid frame (the others stay interpolated)."""
        self.fits = 0
        """Landmark fits that took (REFINE_PASSES a box at most)."""
        self._correction: dict = {}  # track -> (grid index, refined minus interpolated box)
        self._windows = None if refine is not None else {tid: smooth_windows(b) for tid, b in self.boxes.items()}
        self._waiting: deque = deque()  # (grid index, frame image) whose crops wait for later boxes
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
            if self.refine is not None:
                self._refine(frame.image, k)
            self._waiting.append((k, frame.image))
            self._next_grid += 1
            self._crop_ready(final=self._next_grid > self.last_grid)

    def _present(self, k: int) -> list:
        """(track id, index in the track) of the tracks on grid frame k, in track order."""
        return [(tid, k - self._spans.first_of(tid)) for tid in self._spans.on(k)]

    def _refine(self, image: np.ndarray, k: int) -> None:
        """Fit the faces present at grid k again on its frame, from their interpolated boxes."""
        present = self._present(k)
        if not present:
            return
        corrections = [self._correction.get(tid) for tid, _ in present]
        followed = all(c is not None and c[0] == k - 1 for c in corrections)
        fitted = [self.boxes[tid][i] + self._last_correction(tid, k) for tid, i in present]
        for _ in range(REFINE_FOLLOWED_PASSES if followed else REFINE_PASSES):
            moved = self.refine(image, fitted)
            self.fits += len(fitted)
            settled = all(np.abs(np.asarray(b, np.float32) - a).max() <= REFINE_SETTLED * max(float(a[2] - a[0]), 1.0)
                          for a, b in zip(fitted, moved))
            fitted = moved
            if settled:
                break
        for (tid, i), box in zip(present, fitted):
            box = np.asarray(box, np.float32)
            if iou(box, self.boxes[tid][i]) >= REFINE_MIN_IOU:
                self._correction[tid] = (k, box - self.boxes[tid][i])
                self.boxes[tid][i] = box
                self.refined += 1

    def _last_correction(self, tid, k: int) -> np.ndarray:
        """How far the last grid frame's fit moved this track's interpolated box (zero unless
        that frame, k - 1, was refined)."""
        last = self._correction.get(tid)
        return last[1] if last is not None and last[0] == k - 1 else np.zeros(4, np.float32)

    def _crop_ready(self, final: bool) -> None:
        """Crop the waiting grid frames whose smoothing window (6 frames on) is fitted."""
        half = SMOOTH_FRAMES // 2
        while self._waiting and (final or self._waiting[0][0] + half < self._next_grid):
            k, image = self._waiting.popleft()
            for tid, i in self._present(k):
                self._store(tid, i, crop_face(image, self._window(tid, i)))

    def _store(self, tid, i: int, crop: np.ndarray) -> None:
        """Put crop i (cut in order) in its track's chunk; hand the chunk on once it is full."""
        n = len(self.tracks[tid])
        size = self.chunk_frames if self.on_chunk is not None else n
        start, crops = self._chunks.get(tid, (i - i % size, None))
        if crops is None:
            crops = np.empty((min(size, n - start), CROP_SIZE, CROP_SIZE), np.uint8)
            self._chunks[tid] = (start, crops)
            self.buffered_frames += len(crops)
            self.peak_buffered_frames = max(self.peak_buffered_frames, self.buffered_frames)
        crops[i - start] = crop
        if i - start < len(crops) - 1:
            return
        del self._chunks[tid]
        if self.on_chunk is not None:
            self.on_chunk(tid, start, crops)  # may wait for the scorer: the chunk counts till then
        else:
            self.crops[tid] = crops
        self.buffered_frames -= len(crops)
        if i == n - 1 and self.on_done is not None:
            self.on_done(tid)

    def _window(self, tid, i: int):
        if self._windows is not None:
            return self._windows[tid][i]
        half = SMOOTH_FRAMES // 2
        boxes = self.boxes[tid]
        around = boxes[np.clip(np.arange(i - half, i + half + 1), 0, len(boxes) - 1)]
        return smooth_windows(around)[half]  # the median over 13 frames, edges repeated


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


SCORE_WORKERS = 4
"""At most this many chunks are scored at once (fewer on fewer cores): each holds a few
hundred MB of activations (`models.light_asd.MAX_BATCH_FRAMES`)."""
_POLL_S = 0.05
"""How often (s) a pass waiting for the scorer looks whether it failed or was stopped."""


def _cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class TrackScorer:
    """Light-ASD scores of speaker tracks, chunk by chunk (`submit_chunk`, e.g. from
    `SpeakerCropStage.on_chunk`) as soon as a chunk's crops are cut, in `workers` threads
    (default: one per CPU core, SCORE_WORKERS at most) beside the crop pass: torch runs
    without the GIL, and the model scores a chunk with one intra-op thread
    (`models.light_asd.SCORE_THREADS`). A track ending at a shot cut is scored while the
    pass decodes the next shot.

    Back-pressure: at most `max_pending` chunks (default: one per worker) wait or are being
    scored; `submit_chunk` blocks the pass until one is done, so the crops held are bounded
    by chunk size x max_pending whatever the video's length (`pending_frames`), plus the
    chunk the blocked pass holds, which starts as soon as a worker is free. A chunk that
    fails makes the next `submit_chunk` (and `scores`) raise its error. The chunk size must
    be a multiple of the model's window period (`window_period_frames`, when it has one),
    which makes the scores those of the whole track, whenever and in whichever order the
    chunks are scored. Use as a context manager: leaving it cancels what has not started (a
    failed or cancelled pass) and waits for the rest."""

    def __init__(self, model, mfcc: np.ndarray, workers: int | None = None, max_pending: int | None = None,
                 chunk_frames: int = CHUNK_FRAMES) -> None:
        period = getattr(model, "window_period_frames", None)
        if chunk_frames < 1 or (period and chunk_frames % period):
            raise ValueError(f"chunk_frames ({chunk_frames}) must be a positive multiple of the model's window "
                             f"period ({period} frames), or a chunk's windows would differ from the whole track's")
        self.model = model
        self.mfcc = mfcc
        self.chunk_frames = chunk_frames
        self.workers = max(1, workers or min(SCORE_WORKERS, _cores()))
        self.max_pending = max(1, max_pending or self.workers)
        self.pending_frames = 0
        """Crops handed in and not scored yet (waiting or being scored)..."""
        self.peak_pending_frames = 0
        """...and the most at once."""
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="light-asd")
        self._slots = threading.BoundedSemaphore(self.max_pending)
        self._lock = threading.Lock()
        self._chunks: dict = {}  # track id -> {first index: future of its scores}
        self._error: BaseException | None = None
        self._closed = False

    def __enter__(self) -> "TrackScorer":
        return self

    def __exit__(self, *exc) -> None:
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, tid, track: ResampledTrack, crops: np.ndarray) -> None:
        """Score one whole track's crops (once; they must not change any more), chunk by chunk."""
        if tid in self._chunks:
            return
        for start in range(0, len(crops), self.chunk_frames):
            self.submit_chunk(tid, track, start, crops[start:start + self.chunk_frames])

    def submit_chunk(self, tid, track: ResampledTrack, start: int, crops: np.ndarray,
                     stop: threading.Event | None = None) -> None:
        """Start scoring a track's crops from its frame `start` (a multiple of chunk_frames;
        at most chunk_frames of them, all the rest of the track when fewer), with the MFCCs of
        the same grid frames. Waits while max_pending chunks are pending; raises the error of a
        chunk that failed, or RuntimeError when `stop` is set or the scorer closed meanwhile."""
        if start % self.chunk_frames or not 0 < len(crops) <= self.chunk_frames:
            raise ValueError(f"a chunk starts at a multiple of {self.chunk_frames} frames and has 1 to "
                             f"{self.chunk_frames}; got {len(crops)} from frame {start}")
        if start in self._chunks.get(tid, {}):
            return
        while not self._slots.acquire(timeout=_POLL_S):
            self._raise_if_failed()
            if self._closed or (stop is not None and stop.is_set()):
                raise RuntimeError("the track scorer was stopped before this chunk could be scored")
        try:
            self._raise_if_failed()
            first = int(track.frame_indices[0]) + start
            mfcc = self.mfcc[MFCC_PER_FRAME * first:MFCC_PER_FRAME * (first + len(crops))]
            future = self._pool.submit(self.model.score_track, crops, mfcc)
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self.pending_frames += len(crops)
            self.peak_pending_frames = max(self.peak_pending_frames, self.pending_frames)
        self._chunks.setdefault(tid, {})[start] = future
        future.add_done_callback(lambda f, n=len(crops): self._finished(f, n))

    def _finished(self, future, frames: int) -> None:
        """A chunk is scored (or failed, or was cancelled): its slot is free."""
        with self._lock:
            self.pending_frames -= frames
            if not future.cancelled() and future.exception() is not None and self._error is None:
                self._error = future.exception()
        self._slots.release()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def scores(self, tracks: dict[int, ResampledTrack], crops: dict[int, np.ndarray] | None = None) -> SpeakerScores:
        """Every track scored, smoothed, with the competitive `speaking` probability
        (`speaker_scores`): those given whole in `crops` and not submitted yet are submitted
        now; those handed in by chunks must have had all their chunks."""
        for tid, track_crops in (crops or {}).items():
            if tid in tracks:
                self.submit(tid, tracks[tid], track_crops)
        raw = {}
        for tid, track in tracks.items():
            chunks = self._chunks.get(tid)
            if not chunks:
                continue
            starts = sorted(chunks)
            parts = [chunks[s].result() for s in starts]
            ends = np.cumsum([len(p) for p in parts])
            if starts != [0, *ends[:-1].tolist()] or ends[-1] != len(track):
                raise ValueError(f"track {tid}: chunks from frames {starts} cover {int(ends[-1])} of its "
                                 f"{len(track)} frames; every chunk must be submitted before scores()")
            raw[tid] = np.concatenate(parts)
        return speaker_scores(tracks, raw)


def score_tracks(model, tracks: dict[int, ResampledTrack], crops: dict[int, np.ndarray],
                 mfcc: np.ndarray, workers: int | None = None) -> SpeakerScores:
    """Light-ASD scores (smoothed over 5 frames) and the competitive `speaking` probability,
    the tracks scored side by side (`TrackScorer`)."""
    with TrackScorer(model, mfcc, workers) as scorer:
        return scorer.scores(tracks, crops)


class _Spans:
    """Which tracks are on each grid frame: one vectorised test a frame rather than a Python
    loop over every track of the video (an hour of film has thousands)."""

    def __init__(self, frames: dict) -> None:
        self.ids = list(frames)
        self.firsts = np.array([int(f[0]) for f in frames.values()], np.int64)
        self.lasts = np.array([int(f[-1]) for f in frames.values()], np.int64)
        self.last = int(self.lasts.max()) if self.ids else -1
        self._index = {tid: j for j, tid in enumerate(self.ids)}

    def on(self, k: int) -> list:
        """Ids of the tracks on grid frame k, in the order given."""
        return [self.ids[j] for j in np.flatnonzero((self.firsts <= k) & (k <= self.lasts))]

    def first_of(self, tid) -> int:
        return int(self.firsts[self._index[tid]])


def _on_screen(frames: dict[int, np.ndarray]) -> Iterator[tuple[int, list]]:
    """(grid frame k, ids of the tracks on it, in `frames` order) for every k up to the last
    track's end."""
    spans = _Spans(frames)
    for k in range(spans.last + 1):
        yield k, spans.on(k)


def speaker_scores(tracks: dict[int, ResampledTrack], raw: dict[int, np.ndarray]) -> SpeakerScores:
    """Raw Light-ASD scores per track -> smoothed over 5 frames, with the competitive `speaking` probability."""
    from models.light_asd import smooth_scores

    scores = {tid: smooth_scores(raw[tid]) for tid in raw}
    frames = {tid: tracks[tid].frame_indices for tid in raw}
    speaking = {tid: np.zeros(len(s), np.float32) for tid, s in scores.items()}
    for k, on in _on_screen(frames):
        present = [(tid, int(k - frames[tid][0])) for tid in on]
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
    speaker_at: list[str | None] = []
    for k, present in _on_screen(result.frames):
        best, best_score = None, (LONE_SPEAKER_SCORE if len(present) == 1 else 0.0)
        for tid in present:
            score = float(result.scores[tid][k - result.frames[tid][0]])
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


def resample_tracks(tracks: dict) -> dict:
    return {tid: resample_track(t.times_ms, t.boxes) for tid, t in tracks.items()}
