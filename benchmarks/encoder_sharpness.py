"""How close a re-encoded picture stays to its source, per libx264 deblocking setting.

Every lip-synced frame is re-encoded, the untouched parts too. A blind judge compares an
edited frame with its source, so the untouched picture must not look different: neither
crisper (an encoder's added texture) nor softer. For each sample clip and each setting,
side by side in one run, the source's own decoded frames (first `--frames`, in YUV, so no
colour conversion is measured) are encoded at the product's crf and preset and decoded:

- crisp: median over every fifth frame of the luma Laplacian's variance, output over source
  (1.0 = as crisp as the source);
- diff: mean absolute luma difference from the source (levels);
- bytes: the encoded size.

    python -m benchmarks.encoder_sharpness [--frames 60] [--clips d11 d12 s29 d10 d20]
"""
from __future__ import annotations

import argparse
import io
from dataclasses import dataclass

import av
import cv2
import numpy as np

from benchmarks.inputs import DATA
from stages.encode import X264_PARAMS, EncodeSettings

SETTINGS = {
    "libx264 default deblocking": "sliced-threads=1",
    "deblock=1,1": "sliced-threads=1:deblock=1,1",
    f"the product's ({X264_PARAMS.split(':', 1)[-1]})": X264_PARAMS,
    "deblock=3,3": "sliced-threads=1:deblock=3,3",
}


@dataclass
class Row:
    clip: str
    setting: str
    crisp: float
    diff: float
    size: int


def source_frames(clip: str, count: int) -> list[np.ndarray]:
    """The clip's first `count` frames as decoded yuv420p arrays."""
    frames = []
    with av.open(str(DATA / "video" / f"{clip}.mp4")) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="yuv420p"))
            if len(frames) == count:
                break
    return frames


def round_trip(frames: list[np.ndarray], x264_params: str) -> tuple[list[np.ndarray], int]:
    """Encode yuv420p frames in memory at the product's crf and preset, decode them back."""
    height, width = frames[0].shape[0] * 2 // 3, frames[0].shape[1]
    settings = EncodeSettings()
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(settings.crf), "preset": settings.preset, "x264-params": x264_params}
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="yuv420p")))
        container.mux(stream.encode())
    size = buffer.tell()
    buffer.seek(0)
    with av.open(buffer) as container:
        return [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)], size


def measure(clip: str, setting: str, frames: list[np.ndarray]) -> Row:
    encoded, size = round_trip(frames, SETTINGS[setting])
    height = frames[0].shape[0] * 2 // 3
    pairs = [(a[:height].astype(np.float64), b[:height].astype(np.float64)) for a, b in zip(frames, encoded)]
    crisp = [cv2.Laplacian(b, cv2.CV_64F).var() / max(cv2.Laplacian(a, cv2.CV_64F).var(), 1e-9) for a, b in pairs[::5]]
    diff = float(np.mean([np.abs(a - b).mean() for a, b in pairs]))
    return Row(clip, setting, float(np.median(crisp)), diff, size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--clips", nargs="+", default=["d11", "d12", "s29", "d10", "d20"])
    args = parser.parse_args(argv)
    print(f"{'clip':5} {'setting':30} {'crisp':>6} {'diff':>6} {'bytes':>8}")
    for clip in args.clips:
        frames = source_frames(clip, args.frames)
        for setting in SETTINGS:
            row = measure(clip, setting, frames)
            print(f"{row.clip:5} {row.setting:30} {row.crisp:6.3f} {row.diff:6.3f} {row.size:8d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
