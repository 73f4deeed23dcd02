"""models.faces.huge_pages: a loaded model's heap memory collapsed onto 2 MB pages."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from models.faces.huge_pages import HUGE_PAGE, _new_parts, _whole_pages, huge_pages


def test_only_memory_mapped_since_is_collapsed():
    before = [(0x1000, 0x5000), (0x10000, 0x20000), (0x30000, 0x40000)]
    after = [(0x1000, 0x5000), (0x10000, 0x80000), (0x90000, 0xA0000)]  # a heap grew, an arena appeared
    assert _new_parts(before, after) == [((0x20000, 0x30000), (0x10000, 0x80000)),
                                         ((0x40000, 0x80000), (0x10000, 0x80000)),
                                         ((0x90000, 0xA0000), (0x90000, 0xA0000))]
    assert _new_parts(after, after) == []
    assert _new_parts(after, before) == []  # a heap that shrank gained nothing


def test_only_whole_aligned_huge_pages_are_asked_for():
    assert _whole_pages(1, 3 * HUGE_PAGE + 5) == (HUGE_PAGE, 3 * HUGE_PAGE)
    assert _whole_pages(HUGE_PAGE, 2 * HUGE_PAGE) == (HUGE_PAGE, 2 * HUGE_PAGE)
    assert _whole_pages(HUGE_PAGE + 1, 2 * HUGE_PAGE + 7) is None  # no whole page inside


def _huge_kb_in(start: int, end: int) -> int:
    """AnonHugePages (kB) of this process's mappings inside [start, end), from /proc/self/smaps."""
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                low, high = (int(v, 16) for v in head.split("-"))
                inside = low < end and high > start
            elif inside and line.startswith("AnonHugePages:"):
                total += int(line.split()[1])
    return total


_FRESH_PROCESS_CHECK = """
import json, numpy as np
from models.faces.huge_pages import huge_pages
from tests.test_huge_pages import _huge_kb_in
with huge_pages(min_bytes=8 << 20) as collapsed:
    block = np.ones(24 << 20, np.uint8)  # a fresh anonymous mapping, every page touched
start = block.ctypes.data
print(json.dumps({"bytes": collapsed.bytes, "problems": collapsed.problems,
                  "huge": _huge_kb_in(start, start + block.nbytes) * 1024,
                  "same": int(block.sum()) == block.nbytes}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="transparent huge pages are Linux's")
def test_a_large_allocation_made_inside_is_on_huge_pages_afterwards():
    """In a fresh interpreter, as when the face backend loads at a worker's start: after a long
    test session glibc serves a 24 MB block from memory its heap already mapped (its mmap
    threshold grows as large blocks are freed), and nothing new is there to collapse."""
    import json
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-c", _FRESH_PROCESS_CHECK], cwd=root, capture_output=True,
                         text=True, timeout=120, check=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    if result["problems"] and not result["bytes"]:
        pytest.skip(f"this kernel does not collapse (MADV_COLLAPSE is Linux 6.1+): {result['problems']}")
    assert result["bytes"] >= 16 << 20, result
    assert result["huge"] >= 16 << 20, result
    assert result["same"]  # the same contents


def test_small_allocations_are_left_alone():
    with huge_pages(min_bytes=64 << 20) as collapsed:
        block = np.ones(4 << 20, np.uint8)
    assert collapsed.bytes == 0 and not collapsed.problems
    assert int(block.sum()) == block.nbytes


def test_a_mapping_mostly_reserved_and_untouched_is_left_alone():
    with huge_pages(min_bytes=8 << 20) as collapsed:
        reserved = np.empty(64 << 20, np.uint8)  # mapped, never touched: collapsing would fill it
        reserved[:1 << 20] = 1
    assert collapsed.bytes == 0
