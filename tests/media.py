"""Test media builders: write small videos with PyAV + numpy inside a test's own fixture."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import numpy as np


def read_frames(path: Path | str) -> list[np.ndarray]:
    """Every frame's RGB pixels as the pipeline's decoder makes them (`stages.colour`)."""
    from stages.colour import read_rgb_frames

    return read_rgb_frames(path)


def frame_with_landmarks(path: Path | str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame `index` of a video (RGB) and the 68 landmarks (float64 pixels) of its largest
    face, as the default backend finds them."""
    from models.faces.default import DefaultFaceBackend

    frame = read_frames(path)[index]
    face = DefaultFaceBackend().detect(frame, with_embedding=False)[0]
    return frame, np.asarray(face.landmarks, np.float64)


def read_pts(path: Path | str) -> list[int]:
    with av.open(str(path)) as container:
        return [f.pts for f in container.decode(video=0)]


def write_video(path: Path | str, frames: Iterable[np.ndarray], fps: int = 25,
                pts: Iterable[int] | None = None, time_base: Fraction | None = None,
                audio: np.ndarray | None = None, audio_rate: int = 16000, crf: int = 16,
                rotation: int | None = None) -> Path:
    """Encode RGB frames (even sizes) to an H.264 MP4, optionally with explicit pts and mono audio."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.options = {"crf": str(crf), "preset": "ultrafast"}
        stream.pix_fmt = "yuv420p"
        if time_base is not None:
            stream.time_base = time_base
            stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        audio_stream = None
        if audio is not None:
            audio_stream = out.add_stream("aac", rate=audio_rate, layout="mono")
        pts_iter = iter(pts) if pts is not None else None
        for i, image in enumerate(frames):
            if i == 0:
                stream.height, stream.width = image.shape[:2]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if pts_iter is not None:
                frame.pts = next(pts_iter)
                frame.time_base = time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if audio_stream is not None:
            samples = audio.astype(np.float32).reshape(1, -1)
            step = 1024
            for start in range(0, samples.shape[1], step):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + step]),
                                                   format="fltp", layout="mono")
                chunk.sample_rate = audio_rate
                chunk.pts = start
                out.mux(audio_stream.encode(chunk))
            out.mux(audio_stream.encode(None))
    return path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def clip_frames(path: Path | str, size: int | None = None) -> list[np.ndarray]:
    """All frames of a clip, optionally resized to size x size (the sample clips are square)."""
    import cv2

    frames = read_frames(path)
    if size is None:
        return frames
    return [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames]


def compose(path: Path | str, layers: list[dict], width: int, height: int, seconds: float, fps: int = 25,
            audio: np.ndarray | None = None, audio_rate: int = 16000) -> Path:
    """A multi-face test video: each layer is {frames, x, y, start_s, end_s, offset} placed on a
    flat grey background; a layer shows frames[(i - start) + offset] while start_s <= t < end_s."""
    background = np.full((height, width, 3), 90, np.uint8)

    def frames():
        for i in range(int(round(seconds * fps))):
            canvas = background.copy()
            t = i / fps
            for layer in layers:
                if layer.get("start_s", 0) <= t < layer.get("end_s", seconds):
                    clip = layer["frames"]
                    k = (i - int(layer.get("start_s", 0) * fps) + layer.get("offset", 0)) % len(clip)
                    image = clip[k]
                    h, w = image.shape[:2]
                    canvas[layer["y"]:layer["y"] + h, layer["x"]:layer["x"] + w] = image
            yield canvas

    return write_video(path, frames(), fps=fps, audio=audio, audio_rate=audio_rate)
