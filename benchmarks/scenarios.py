"""Benchmark scenarios. Each runs in its own process (so peak RSS is its own) and
returns a dict: frames, wall_s, fps and per-stage metrics when it is a pipeline."""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import av

from stream import jobs
from stream.config import Settings

SETTINGS = Settings(preset="veryfast", crf=18)


def codec_floor(video: str, out: str, audio: str | None) -> dict:
    """PyAV decode then encode in one plain loop, same encoder settings: the floor."""
    start = time.perf_counter()
    frames = 0
    with av.open(video) as source, av.open(out, "w", options={"movflags": "+faststart"}) as sink:
        src = source.streams.video[0]
        src.thread_type = "AUTO"
        dst = sink.add_stream("libx264", rate=src.average_rate)
        dst.width, dst.height, dst.pix_fmt = src.codec_context.width, src.codec_context.height, "yuv420p"
        dst.options = {"crf": str(SETTINGS.crf), "preset": SETTINGS.preset}
        dst.thread_type = "AUTO"
        for frame in source.decode(src):
            image = frame.to_ndarray(format="rgb24")
            sink.mux(dst.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            frames += 1
        sink.mux(dst.encode(None))
    wall = time.perf_counter() - start
    return {"frames": frames, "wall_s": wall, "fps": frames / wall}


def passthrough(video: str, out: str, audio: str | None) -> dict:
    result = jobs.passthrough(video, out, audio, SETTINGS)
    return {"frames": result["frames"], "wall_s": result["metrics"]["wall_s"],
            "fps": result["frames"] / result["metrics"]["wall_s"], "stages": result["metrics"]["stages"]}


SCENARIOS = {"codec_floor": codec_floor, "passthrough": passthrough}


def main() -> None:
    name, video, out = sys.argv[1:4]
    audio = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None
    result = SCENARIOS[name](video, out, audio)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
