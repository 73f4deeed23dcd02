"""Typed errors a user can cause, each saying what was wrong and what to fix."""
from __future__ import annotations


class LipSyncError(Exception):
    """Base of the errors the product reports to callers (HTTP 4xx/5xx, CLI exit 2)."""

    status_code = 422


class MediaError(LipSyncError):
    """An input file that cannot be used: missing, not media, no video/audio stream, corrupt."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class InputError(LipSyncError):
    """A request that is wrong in itself (bad field, time range, unknown face)."""


class FetchError(LipSyncError):
    """A URL that could not be fetched or is not allowed."""


class UploadError(LipSyncError):
    """The result could not be uploaded to the given URL."""

    status_code = 502
