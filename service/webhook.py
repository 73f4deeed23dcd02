"""Webhooks: a job's final record POSTed to the URL its caller gave (`webhook_url`).

The URL is checked when the job is submitted (same SSRF rules as upload_url) and again
when it is delivered, since DNS may have changed in between. Delivery retries like an
upload (LIPSYNC_UPLOAD_ATTEMPTS, LIPSYNC_UPLOAD_BACKOFF_S); its outcome is kept on the
record (`webhook`: delivered, attempts, status_code, error).
"""
from __future__ import annotations

import logging
from dataclasses import asdict

from service.addresses import redact_url
from service.delivery import UploadPolicy, check_destination, post_json
from service.jobstore import JobRecord, JobStore, log_event
from stream.errors import InputError


def check_webhook_url(raw: object, policy: UploadPolicy) -> str | None:
    """The body's optional webhook_url, refused (422) by the same SSRF rules as upload_url."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InputError("field 'webhook_url' must be a string (an http or https URL)")
    check_destination(raw, role="webhook_url", policy=policy)
    return raw


def deliver(record: JobRecord, store: JobStore, policy: UploadPolicy) -> dict:
    """POST the finished record's public JSON to its webhook_url; store and log the outcome."""
    outcome = asdict(post_json(record.webhook_url, record.public_json(), policy=policy, role="webhook_url"))
    store.set_webhook(record.job_id, outcome)
    log_event("webhook_delivered" if outcome["delivered"] else "webhook_failed", record.job_id,
              level=logging.INFO if outcome["delivered"] else logging.WARNING,
              url=redact_url(record.webhook_url), attempts=outcome["attempts"],
              status=outcome["status_code"], error=outcome["error"])
    return outcome
