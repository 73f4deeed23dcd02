"""Native libraries' own thread pools while a pipeline runs: OpenCV on the calling thread.

A pipeline already spreads its work over threads: one per stage, plus FFmpeg's and x264's
own. OpenCV's pthreads pool adds one worker per core that splits each large call with the
calling thread, then spins (`sched_yield`) for a while waiting for the next call; the caller
spins too, waiting for the worker. On 2 cores with every stage busy that buys no speed and
burns CPU. In the lipsync job (720p, 2 faces, 10 s; `benchmarks.threads`) the pool's worker
used 1.3-5.0 CPU ms a frame in the render and 0.3-1.2 in the mouth-bank pass. With OpenCV on
one thread, in alternating runs of the same tree (a loaded machine, load 4-7): 1 face 57.3
and 56.9 -> 54.3 and 51.4 CPU ms a frame, the sequential run 79.2 and 76.5 -> 77.0 and 70.2,
and one full benchmark each side 85.2 -> 67.9 for 2 faces; the output files byte-identical
(OpenCV gives the same pixels on one thread).

The setting is process-wide, so it is counted: the first pipeline to start sets OpenCV to
one thread, the last to end puts back what it found. Work outside pipelines (a job's
setup) keeps OpenCV's own default.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_running = 0
_saved: int | None = None


def _opencv():
    try:
        import cv2
    except ImportError:  # a stream without OpenCV has no pool to quiet
        return None
    return cv2


@contextmanager
def one_opencv_thread() -> Iterator[None]:
    """OpenCV on one thread (`cv2.setNumThreads(1)`) while any pipeline runs."""
    global _running, _saved
    cv2 = _opencv()
    with _lock:
        if _running == 0 and cv2 is not None:
            _saved = cv2.getNumThreads()
            cv2.setNumThreads(1)
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0 and cv2 is not None and _saved is not None:
                cv2.setNumThreads(_saved)
                _saved = None
