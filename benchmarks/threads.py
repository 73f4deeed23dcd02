"""Where a scenario's CPU went, thread by thread, native threads included (Linux /proc).

The stage counters (`stream.metrics`) see only the CPU a stage's own thread spends inside
`process()`; a row's CPU column is the whole process's. This sampler reads every thread's
CPU time from /proc/self/task/<tid>/stat while the measured spans run, and groups it:

- "stage <name>": a pipeline stage's thread (process() and everything around it: the
  queues, the counters);
- "codec": native threads started inside the span: FFmpeg's decoder threads, x264's
  encoder threads, swscale's;
- "pools": native threads started before the span: the libraries' thread pools (OpenCV,
  OpenBLAS, torch, onnxruntime), started when they were first used;
- "main": the thread that runs the pipeline (it waits for the last stage);
- "python": other Python threads (the progress watcher);
- "child processes": processes the span started and waited for (PocketSphinx runs in
  one, `models.sphinx_decode`), from getrusage's RUSAGE_CHILDREN;
- "unsampled": the span's process CPU less all the above: threads that started and ended
  between two samples (swscale's, which PyAV's `to_ndarray` starts for each conversion at
  its default threads=0; the decoder's `stages.colour.frame_to_rgb` converts in its own
  thread), or the last part of a thread that ended before the next sample.

Spans are labelled: the mouth-bank pass ("bank pass") apart from the render. The sampler's
own thread is left out of every group and reported apart, so that a row's CPU can be read
without it. Elsewhere than Linux the report is empty.
"""
from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass, field

TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SAMPLER_NAME = "thread-cpu-sampler"


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's child processes that ended and were waited for."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def process_cpu_s() -> float:
    """This process's CPU seconds (all threads) plus its ended child processes': what a job
    costs when part of it runs in a child (PocketSphinx, `models.sphinx_decode`)."""
    return time.process_time() + children_cpu_s()


def read_threads() -> dict[int, tuple[str, float]]:
    """{tid: (kernel name, user + system CPU seconds)} of this process's threads; {} without /proc.

    The CPU time is the scheduler's, in nanoseconds (schedstat), where the kernel keeps it:
    stat's user and system times count whole clock ticks (10 ms), as much as a short run's
    codec threads spend in all, so such a thread could read 0 and go uncounted."""
    found = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as handle:
                text = handle.read()
        except OSError:  # it ended meanwhile
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        found[int(tid)] = (name, _scheduled_s(tid) or (int(fields[11]) + int(fields[12])) / TICKS_PER_S)
    return found


def _scheduled_s(tid: str) -> float | None:
    """A thread's time on a CPU (s) from /proc/self/task/<tid>/schedstat, or None without it."""
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as handle:
            return int(handle.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class _Span:
    label: str
    start_cpu: float
    base: dict[int, float]  # CPU seconds of the threads alive when it began
    start_children: float = 0.0
    children_s: float = 0.0
    last: dict[int, float] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    cpu_s: float = 0.0


class ThreadSampler:
    """Samples every thread's CPU time each `interval_s` while a span is open.

    `begin(label)` / `end()` bracket a measured span (one pipeline run); spans with the same
    label add up. `groups()` gives CPU seconds by (label, group)."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._span: _Span | None = None
        self._done: list[_Span] = []
        self._python: dict[int, str] = {}
        self._born_before: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ThreadSampler:
        self._born_before = set(read_threads())
        self._thread = threading.Thread(target=self._loop, name=SAMPLER_NAME, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def begin(self, label: str) -> None:
        now = read_threads()
        with self._lock:
            self._note_python()
            self._span = _Span(label, time.process_time(), {tid: cpu for tid, (_, cpu) in now.items()},
                               children_cpu_s())
            self._record(now)

    def end(self) -> None:
        now = read_threads()
        with self._lock:
            span, self._span = self._span, None
            if span is None:
                return
            self._note_python()
            self._record(now, span)
            span.cpu_s = time.process_time() - span.start_cpu
            span.children_s = children_cpu_s() - span.start_children
            self._done.append(span)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            now = read_threads()
            with self._lock:
                self._note_python()
                self._record(now)

    def _note_python(self) -> None:
        for thread in threading.enumerate():
            if thread.native_id is not None:
                self._python[thread.native_id] = thread.name

    def _record(self, now: dict[int, tuple[str, float]], span: _Span | None = None) -> None:
        span = span or self._span
        if span is None:
            return
        for tid, (name, cpu) in now.items():
            span.last[tid] = cpu
            span.names[tid] = name

    def _group(self, tid: int, kernel_name: str) -> str | None:
        if tid == threading.main_thread().native_id:
            return "main"
        name = self._python.get(tid)
        if name == SAMPLER_NAME:
            return None
        if name is not None:
            return f"stage {name[len('stage-'):]}" if name.startswith("stage-") else "python"
        return "pools" if tid in self._born_before else "codec"

    def groups(self) -> dict[str, dict[str, float]]:
        """{span label: {group: CPU seconds}}, "unsampled" included, the sampler left out."""
        result: dict[str, dict[str, float]] = {}
        with self._lock:
            spans = list(self._done)
        for span in spans:
            groups = result.setdefault(span.label, {})
            counted = 0.0
            for tid, cpu in span.last.items():
                spent = cpu - span.base.get(tid, 0.0)
                group = self._group(tid, span.names.get(tid, ""))
                if group is None or spent <= 0:
                    continue
                groups[group] = groups.get(group, 0.0) + spent
                counted += spent
            sampler = sum(cpu - span.base.get(tid, 0.0) for tid, cpu in span.last.items()
                          if self._python.get(tid) == SAMPLER_NAME)
            groups["unsampled"] = groups.get("unsampled", 0.0) + max(0.0, span.cpu_s - sampler - counted)
            if span.children_s > 0:
                groups["child processes"] = groups.get("child processes", 0.0) + span.children_s
            groups["sampler"] = groups.get("sampler", 0.0) + sampler
        return result
