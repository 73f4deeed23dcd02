"""A wall-clock deadline and the job's cancel flag for a blocking httpx transfer (fetch or upload).

httpx's timeouts restart on every byte, so a peer that sends or reads one byte at a time
is never caught by them. A `Watchdog` thread looks at the clock and the cancel flag every
POLL_S seconds and, when time is up or the job was cancelled, shuts down every socket the
transfer opened (seen through httpcore's `trace` extension): a read or write blocked on
one returns at once, whatever the peer does. The transfer then asks `reason` why.
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

POLL_S = 0.2
"""How often the watchdog looks at the clock and the cancel flag, seconds."""


class Watchdog:
    """Stops a transfer from another thread at `total_s` or once `cancelled()` is True."""

    def __init__(self, total_s: float, cancelled: Callable[[], bool] | None = None) -> None:
        self.total_s = total_s
        self.expires = time.monotonic() + total_s
        self.cancelled = cancelled or (lambda: False)
        self.reason: str | None = None  # "deadline" or "cancelled" once it stopped the transfer
        self.stopped = threading.Event()  # set with `reason`; a retry backoff waits on it
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="transfer-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def left_s(self) -> float:
        """Seconds before the deadline (at least a millisecond, for httpx timeouts)."""
        return max(0.001, self.expires - time.monotonic())

    def why_stopped(self) -> str | None:
        """'cancelled', 'deadline' (also when the clock passed it between two polls), or None."""
        if self.reason is None and time.monotonic() >= self.expires:
            return "deadline"
        return self.reason

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace extension: keep each new connection's socket."""
        if event not in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with self._lock:
                self._sockets.append(sock)
                stopped = self.reason is not None
            if stopped:
                _shut(sock)

    def _watch(self) -> None:
        while not self._done.wait(POLL_S):
            if self.cancelled():
                self.reason = "cancelled"
            elif time.monotonic() >= self.expires:
                self.reason = "deadline"
            else:
                continue
            self.stopped.set()
            with self._lock:
                for sock in self._sockets:
                    _shut(sock)
            return


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed
