"""Benchmark inputs built from ../shared/data: N talking faces side by side at a given size."""
from __future__ import annotations

import logging
from pathlib import Path

import av
import cv2
import numpy as np

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ASD_WEIGHTS = ROOT.parent / "shared" / "models" / "light-asd" / "pretrain_AVA_CVPR.model"
CLIPS = ("d12.mp4", "d20.mp4", "d11.mp4")
FPS = 25


def _clip_frames(name: str, size: int) -> list[np.ndarray]:
    with av.open(str(DATA / "video" / name)) as container:
        return [cv2.resize(f.to_ndarray(format="rgb24"), (size, size), interpolation=cv2.INTER_AREA)
                for f in container.decode(video=0)]


def build_input(width: int, height: int, faces: int, duration_s: float, folder: Path) -> Path:
    """A `faces`-person video of width x height at 25 fps, looping the sample clips.

    Each clip is scaled to 60% of the height and placed side by side on a soft gradient,
    so faces are 150-250 px wide at 720p like a typical two-shot. Cached by name.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"in_{width}x{height}_{faces}f_{duration_s:g}s.mp4"
    if path.exists():
        return path
    size = int(height * 0.6)
    clips = [_clip_frames(CLIPS[i % len(CLIPS)], size) for i in range(faces)]
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([40 + xx * 60 // width, 50 + yy * 40 // height,
                           70 + (xx + yy) * 30 // (width + height)], -1).astype(np.uint8)
    slots = [int((i + 0.5) * width / faces - size / 2) for i in range(faces)]
    top = (height - size) // 2
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        for i in range(int(duration_s * FPS)):
            canvas = background.copy()
            for clip, x in zip(clips, slots):
                canvas[top:top + size, max(0, x):x + size] = clip[i % len(clip)][:, max(0, -x):]
            out.mux(stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        out.mux(stream.encode(None))
    tmp.rename(path)
    log.info("built %s", path)
    return path
