"""Inputs in, results out: one import point for the modules that fetch, probe and upload.

- `stream.addresses`: the address policy (SSRF guard) every outgoing request passes
- `stream.fetch`: URLs to temp files, under a wall-clock deadline and the job's cancel flag
- `stream.probe`: is a downloaded file the media it should be, whole and within limits
- `stream.delivery`: PUT results to presigned URLs, POST JSON to webhooks

Each module documents its own env vars.
"""
from stream.addresses import non_public_reason, redact_url
from stream.delivery import (
    PostResult,
    UploadCancelled,
    UploadPolicy,
    UploadResult,
    check_destination,
    check_upload_url,
    post_json,
    upload_file,
)
from stream.fetch import FetchCancelled, FetchPolicy, fetch_to_temp
from stream.probe import MediaInfo, probe_media

__all__ = [
    "FetchCancelled", "FetchPolicy", "MediaInfo", "PostResult", "UploadCancelled", "UploadPolicy", "UploadResult",
    "check_destination", "check_upload_url", "fetch_to_temp", "non_public_reason", "post_json",
    "probe_media", "redact_url", "upload_file",
]
