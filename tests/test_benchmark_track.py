"""benchmarks.track's clock: exclusive CPU per part, counted on the chosen thread only."""
from __future__ import annotations

import threading
import time

from benchmarks.track import PartClock


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_part_leaves_out_the_parts_it_calls_and_other_threads_are_not_counted():
    counted = threading.get_ident()
    clock = PartClock(counts=lambda: threading.get_ident() == counted)
    inner = clock.wrap("inner", lambda: _spin(0.02))

    def outer_body():
        _spin(0.01)
        inner()
        inner()

    outer = clock.wrap("outer", outer_body)
    outer()
    assert clock.calls == {"outer": 1, "inner": 2}
    assert 0.035 <= clock.cpu_s["inner"] < 0.08
    assert 0.009 <= clock.cpu_s["outer"] < 0.03  # its own 10 ms, not the 40 ms it called
    elsewhere = threading.Thread(target=outer)
    elsewhere.start()
    elsewhere.join()
    assert clock.calls == {"outer": 1, "inner": 2}
