"""Decode stage: PyAV video decoding into Frames with their real timestamps.

Codec threading is on (`thread_type = "AUTO"`). Variable frame rate is preserved because
each Frame keeps its own pts. Rotation metadata (display matrix) is applied to the pixels,
so downstream stages and the encoder see the picture upright. In `sample_fps` mode only
the frames nearest to k/N seconds are converted to RGB; the rest are dropped undecoded to
RGB, which is most of the cost of a frame.

With a `hwaccel` (see `stream.device.video_hwaccel`) the video is decoded by NVDEC and
each frame is downloaded to system memory, since the tracker needs host pixels. A machine
where the hardware decoder cannot open decodes in software instead; `hwaccel_problem`
then says why.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import av
import numpy as np

from stages.colour import BT601, ColourSpace, frame_to_rgb
from stages.shots import ShotDetector
from stream.errors import MediaError
from stream.frame import Frame
from stream.stage import Source

log = logging.getLogger(__name__)

_HTML_PREFIXES = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")


@dataclass
class VideoInfo:
    """What a video file is: display size (after rotation), rate, timing and streams."""

    path: str
    width: int
    height: int
    fps: float
    time_base: Fraction
    frame_count: int
    duration_ms: float
    rotation: int
    codec: str
    has_audio: bool
    audio_codec: str | None
    audio_sample_rate: int | None
    colour: ColourSpace = BT601
    """The video stream's colour matrix, range, primaries and transfer (`stages.colour`)."""


def open_media(path: str | os.PathLike) -> av.container.InputContainer:
    """av.open with errors that name the file and say what is wrong with it."""
    path = str(path)
    if not os.path.exists(path):
        raise MediaError(path, "file not found")
    if os.path.getsize(path) == 0:
        raise MediaError(path, "file is empty (0 bytes)")
    try:
        return av.open(path)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        with open(path, "rb") as handle:
            head = handle.read(512).lstrip().lower()
        if head.startswith(_HTML_PREFIXES):
            raise MediaError(path, "is an HTML page, not a video; the URL probably points to a web or error page") from exc
        if b"ftyp" in head[:16]:
            raise MediaError(path, f"is a corrupt or truncated MP4 ({exc}); re-export or re-upload the file") from exc
        raise MediaError(path, f"is not a media file PyAV can read ({exc}); send a video (MP4, MOV, MKV, WebM) or an audio file (WAV, MP3, M4A)") from exc


def _rotation_of(stream: av.video.stream.VideoStream, container: av.container.InputContainer) -> int:
    """Counter-clockwise display rotation in degrees (0, 90, 180, 270), from the first frame."""
    for frame in container.decode(stream):
        return int(round(getattr(frame, "rotation", 0) or 0)) % 360
    return 0


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's geometry and timing. Raises MediaError for anything unusable."""
    path = str(path)
    with open_media(path) as container:
        if not container.streams.video:
            raise MediaError(path, "has no video stream (audio only?); send a file with a video track")
        stream = container.streams.video[0]
        try:
            rotation = _rotation_of(stream, container)
        except av.error.FFmpegError as exc:
            raise MediaError(path, f"video stream cannot be decoded ({exc}); the file is corrupt or truncated") from exc
        if stream.codec_context.width <= 0:
            raise MediaError(path, "video stream has no picture size; the file is corrupt")
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation in (90, 270):
            width, height = height, width
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        time_base = stream.time_base or Fraction(1, 90000)
        if stream.duration is not None:
            duration_ms = float(stream.duration * time_base * 1000)
        elif container.duration is not None:
            duration_ms = container.duration / 1000
        else:
            duration_ms = 0.0
        frame_count = stream.frames or int(round(duration_ms / 1000 * fps))
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            path=path, width=width, height=height, fps=fps, time_base=time_base,
            frame_count=frame_count, duration_ms=duration_ms, rotation=rotation,
            codec=stream.codec_context.name, has_audio=audio is not None,
            audio_codec=audio.codec_context.name if audio else None,
            audio_sample_rate=audio.rate if audio else None,
            colour=ColourSpace.of(stream.codec_context),
        )


def expected_frames(info: VideoInfo, sample_fps: float | None = None, max_duration_ms: float | None = None) -> int:
    """How many frames a DecodeStage over this video yields, for progress totals: one per
    1/sample_fps s tick (at most one per frame), or every frame before max_duration_ms.
    An estimate for variable frame rates; JobContext ends a phase at the real count."""
    duration_s = info.duration_ms / 1000
    if max_duration_ms is not None:
        duration_s = min(duration_s, max_duration_ms / 1000)
    rate = min(sample_fps, info.fps) if sample_fps else info.fps
    return max(1, min(info.frame_count, math.ceil(duration_s * rate - 1e-6)))


def rotate_upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a counter-clockwise display rotation (degrees) to an HxWxC image."""
    turns = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, k=turns)) if turns else image


EXTEND_MODES = ("loop", "bounce")
_REVERSE_CHUNK = 24


class DecodeStage(Source):
    """Yields Frames from a video file.

    sample_fps: when set, yield only the frame nearest to each k/sample_fps seconds.
    max_duration_ms: stop after this presentation time (cut_off and trim modes).
    extend_to_ms / extend_mode: play the video again ("loop": from the start; "bounce":
    backwards, then forwards...) until this time; output timestamps keep increasing.
    A backward pass decodes chunks of frames from the keyframe before each chunk, so
    memory stays at one chunk whatever the length.
    hwaccel: PyAV's `HWAccel` to decode on a GPU, or None for software decoding.
    shots: a `stages.shots.ShotDetector` that sees every decoded frame (sampled or not);
    each Frame's notes["shot"] is its shot index (0 without a detector).
    """

    name = "decode"

    def __init__(self, path: str | os.PathLike, sample_fps: float | None = None,
                 max_duration_ms: float | None = None, threads: int = 0,
                 extend_to_ms: float | None = None, extend_mode: str = "loop",
                 hwaccel: av.codec.hwaccel.HWAccel | None = None, shots: ShotDetector | None = None) -> None:
        if extend_mode not in EXTEND_MODES:
            raise ValueError(f"extend_mode must be one of {EXTEND_MODES}")
        self.path = str(path)
        self.sample_fps = sample_fps
        self.max_duration_ms = max_duration_ms
        self.threads = threads
        self.extend_to_ms = extend_to_ms
        self.extend_mode = extend_mode
        self.hwaccel = hwaccel
        self.hwaccel_problem: str | None = None
        self.shots = shots
        self.decoded = 0

    def _open(self) -> av.container.InputContainer:
        """The container, on the hardware decoder when one was given and it opens, else in software."""
        if self.hwaccel is not None:
            try:
                return av.open(self.path, hwaccel=self.hwaccel)
            except av.error.FFmpegError as exc:
                self.hwaccel_problem = str(exc) or type(exc).__name__
                log.info("hardware decoding unavailable for %s (%s); decoding in software",
                         self.path, self.hwaccel_problem)
        return open_media(self.path)

    def items(self) -> Iterator[Frame]:
        with self._open() as container:
            if not container.streams.video:
                raise MediaError(self.path, "has no video stream (audio only?); send a file with a video track")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if self.threads:
                stream.codec_context.thread_count = self.threads
            raw = self._decode(container, stream)
            if self.extend_to_ms is not None:
                raw = self._extended(raw, container, stream)
            if self.shots is not None:
                raw = self.shots.label(raw)
            if self.sample_fps:
                raw = self._nearest_to_ticks(raw, self.sample_fps)
            for index, pts, time_base, av_frame, *shot in raw:
                image = frame_to_rgb(av_frame)
                rotation = int(round(getattr(av_frame, "rotation", 0) or 0)) % 360
                yield Frame(index=index, pts=pts, time_base=time_base, image=rotate_upright(image, rotation),
                            notes={"shot": shot[0] if shot else 0})

    def _decode(self, container, stream) -> Iterator[tuple[int, int, Fraction, av.VideoFrame]]:
        """(index, pts, time_base, frame) in presentation order, pts never None or repeated."""
        time_base = stream.time_base
        step = max(1, int(round(1 / (float(stream.average_rate or 25) * time_base))))
        last_pts = size = None
        try:
            for index, av_frame in enumerate(container.decode(stream)):
                pts = av_frame.pts
                if pts is None:
                    pts = 0 if last_pts is None else last_pts + step
                if last_pts is not None and pts <= last_pts:
                    pts = last_pts + 1
                last_pts = pts
                size = self._same_size(size, av_frame, float(pts * time_base))
                if self.max_duration_ms is not None and pts * time_base * 1000 >= self.max_duration_ms:
                    return
                self.decoded = index + 1
                yield index, pts, time_base, av_frame
        except av.error.FFmpegError as exc:
            raise MediaError(self.path, f"decoding failed after {self.decoded} frames ({exc}); the file is corrupt or truncated") from exc

    def _same_size(self, size: tuple[int, int] | None, av_frame: av.VideoFrame, time_s: float) -> tuple[int, int]:
        """The stream's frame size; a frame of another size is refused (422) before it is converted,
        so a small first picture cannot smuggle in huge ones or put boxes in the wrong coordinates."""
        this = (av_frame.width, av_frame.height)
        if size is not None and this != size:
            raise MediaError(self.path, f"changes resolution mid-stream, from {size[0]}x{size[1]} to "
                                        f"{this[0]}x{this[1]} at {time_s:.2f} s; re-encode the video at one size")
        return this

    def _extended(self, first_pass, container, stream):
        """The first pass, then more passes (loop or bounce) until extend_to_ms."""
        time_base = stream.time_base
        limit = self.extend_to_ms / 1000 / time_base
        pts_list: list[int] = []
        index = 0
        for index, pts, tb, av_frame in first_pass:
            pts_list.append(pts)
            yield index, pts, tb, av_frame
        if not pts_list:
            return
        step = pts_list[-1] - pts_list[-2] if len(pts_list) > 1 else 1
        cycle = pts_list[-1] - pts_list[0] + step
        start = pts_list[-1] + step
        forward = self.extend_mode == "loop"
        while start < limit:
            frames = self._forward(container, stream) if forward else self._backward(container, stream, pts_list)
            for pts, av_frame in frames:
                offset = pts - pts_list[0] if forward else pts_list[-1] - pts
                new_pts = start + offset
                if new_pts >= limit:
                    return
                index += 1
                yield index, new_pts, time_base, av_frame
            start += cycle
            if self.extend_mode == "bounce":
                forward = not forward

    @staticmethod
    def _forward(container, stream):
        container.seek(0, stream=stream, backward=True)
        for av_frame in container.decode(stream):
            if av_frame.pts is not None:
                yield av_frame.pts, av_frame

    @staticmethod
    def _backward(container, stream, pts_list: list[int]):
        for end in range(len(pts_list), 0, -_REVERSE_CHUNK):
            wanted = pts_list[max(0, end - _REVERSE_CHUNK):end]
            container.seek(wanted[0], stream=stream, backward=True)
            chunk = []
            for av_frame in container.decode(stream):
                if av_frame.pts is None or av_frame.pts < wanted[0]:
                    continue
                if av_frame.pts > wanted[-1]:
                    break
                chunk.append((av_frame.pts, av_frame))
            yield from reversed(chunk)

    @staticmethod
    def _nearest_to_ticks(raw, sample_fps: float):
        """Keep, for each tick k/sample_fps s, the frame whose time is nearest to it (once)."""
        previous, previous_t, gap, yielded, tick = None, 0.0, 0.0, -1, 0
        for entry in raw:
            t = float(entry[1] * entry[2])
            while tick / sample_fps <= t:
                target = tick / sample_fps
                use_previous = previous is not None and target - previous_t < t - target
                chosen = previous if use_previous else entry
                if chosen[0] != yielded:
                    yielded = chosen[0]
                    yield chosen
                tick += 1
            gap = t - previous_t if previous is not None else gap
            previous, previous_t = entry, t
        if previous is not None and previous[0] != yielded and tick / sample_fps < previous_t + gap:
            yield previous
