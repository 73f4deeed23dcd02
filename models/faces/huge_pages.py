"""A loaded model's memory on 2 MB pages (Linux transparent huge pages), for models whose
every call wanders over all of it.

dlib's 68-point shape predictor is ~88 MB of regression trees in small heap blocks, and each
fit reads one leaf of each of its 7,500 trees: about 4 MB at random places spread over the
whole model. With 4 KB pages nearly every leaf is another page, and the TLB (a few thousand
entries) cannot cover 88 MB; on 2 MB pages 44 entries do. Debian's default
(`/sys/kernel/mm/transparent_hugepage/enabled` = madvise) leaves ordinary heap memory on
4 KB pages, so after the model is loaded its pages are collapsed into huge ones with
`madvise(MADV_COLLAPSE)` (Linux 6.1+, independent of that setting). Measured in the lipsync
job (720p, 2 faces, the track stage's thread, alternating runs): 1.96 -> 1.64 ms a fit
(medians of 4), and steadier under load. Where the call is unavailable (another OS, an older
kernel, THP disabled) nothing changes.
"""
from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

HUGE_PAGE = 2 << 20
"""Bytes in one x86-64 / arm64 transparent huge page."""
MADV_COLLAPSE = 25
"""linux/mman.h: collapse the range's pages into huge pages now (Linux 6.1)."""
MIN_RESIDENT = 0.75
"""Share of a mapping that must be in memory for its new part to be collapsed: a collapse
fills the missing pages, so a mostly reserved, untouched mapping (another thread's) would grow."""


def _anonymous_ranges() -> list[tuple[int, int]]:
    """(start, end) of this process's private writable anonymous mappings (the malloc heap
    and arenas), from /proc/self/maps; [] where there is none to read."""
    ranges = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split()
                if len(parts) < 5 or parts[1][:2] != "rw" or parts[4] != "0":
                    continue
                if len(parts) > 5 and parts[5] != "[heap]":
                    continue  # a named mapping: a stack, a file, vdso...
                start, end = (int(v, 16) for v in parts[0].split("-"))
                ranges.append((start, end))
    except OSError:
        return []
    return ranges


def _new_parts(before: list[tuple[int, int]],
               after: list[tuple[int, int]]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The address ranges that `after`'s mappings cover and `before`'s did not (a grown heap's
    new tail, a new arena), each with the mapping it lies in."""
    parts = []
    for mapping in after:
        pieces = [mapping]
        for old_start, old_end in before:
            pieces = [piece for start, end in pieces
                      for piece in ((start, min(end, old_start)), (max(start, old_end), end)) if piece[1] > piece[0]]
        parts.extend((piece, mapping) for piece in pieces)
    return parts


def _resident(ranges: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """Resident bytes of each of these mappings, from /proc/self/smaps."""
    wanted, resident, current = set(ranges), {}, None
    try:
        with open("/proc/self/smaps") as smaps:
            for line in smaps:
                head = line.split(maxsplit=1)[0]
                if not head.endswith(":"):
                    start, end = (int(v, 16) for v in head.split("-"))
                    current = (start, end) if (start, end) in wanted else None
                elif current is not None and head == "Rss:":
                    resident[current] = int(line.split()[1]) * 1024
    except OSError:
        return {}
    return resident


def _whole_pages(start: int, end: int) -> tuple[int, int] | None:
    """The 2 MB-aligned part of [start, end), or None when it holds no whole huge page."""
    first = -(-start // HUGE_PAGE) * HUGE_PAGE
    last = end // HUGE_PAGE * HUGE_PAGE
    return (first, last) if last > first else None


@dataclass
class Collapsed:
    """What `huge_pages` did: bytes collapsed onto huge pages, and why not where it could not."""

    bytes: int = 0
    problems: list[str] = field(default_factory=list)


def _madvise():
    """libc's madvise on Linux (the C library the process already has), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    return madvise


@contextmanager
def huge_pages(min_bytes: int = 16 << 20) -> Iterator[Collapsed]:
    """Collapse the heap memory the block added onto 2 MB pages, when it is at least
    `min_bytes` (a model worth it). Yields a `Collapsed` filled in at the block's end.

    Only memory that was not mapped before the block is collapsed (a grown heap's tail, new
    arenas): the part of a model that glibc put in free space its heap already had stays on
    small pages (about 20 of dlib's 88 MB when loaded first). The block should only load the
    model: whatever else it allocates shares the pages.
    """
    result = Collapsed()
    madvise = _madvise()
    before = _anonymous_ranges() if madvise is not None else []
    yield result
    if madvise is None or not before:
        return
    parts = _new_parts(before, _anonymous_ranges())
    if sum(end - start for (start, end), _ in parts) < min_bytes:
        return
    resident = _resident([mapping for _, mapping in parts])
    spans = [span for part, (start, end) in parts if resident.get((start, end), 0) >= MIN_RESIDENT * (end - start)
             and (span := _whole_pages(*part))]
    for start, end in spans:
        if madvise(start, end - start, MADV_COLLAPSE) == 0:
            result.bytes += end - start
        else:
            result.problems.append(f"{(end - start) >> 20} MB at {start:#x}: errno {ctypes.get_errno()}")
    if result.problems:
        log.debug("huge pages: %s", "; ".join(result.problems))
