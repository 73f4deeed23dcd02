"""Prometheus metrics of the service (`GET /metrics`), with prometheus-client.

Each app gets its own CollectorRegistry, so several apps in one process (tests) do not
clash. Names follow Prometheus conventions: counters end in `_total`, durations are in
seconds, throughput in frames per second.
"""
from __future__ import annotations

from typing import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_DURATION_BUCKETS_S = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 3600)
_FPS_BUCKETS = (0.5, 1, 2, 5, 10, 15, 20, 25, 30, 45, 60, 120)


class ServiceMetrics:
    """Counters and histograms of jobs; `render()` gives the text exposition format."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.submitted = Counter("lipsync_jobs_submitted_total", "Jobs admitted to the queue",
                                 ["kind", "mode"], registry=r)
        self.finished = Counter("lipsync_jobs_finished_total", "Jobs that ended, by final state",
                                ["kind", "state"], registry=r)
        self.rejected = Counter("lipsync_jobs_rejected_total",
                                "Requests refused before running (queue_full, shutting_down, body_too_large)",
                                ["kind", "reason"], registry=r)
        self.failures = Counter("lipsync_job_failures_total",
                                "Failed jobs by reason (the error type, or 'internal')", ["kind", "reason"],
                                registry=r)
        self.duration = Histogram("lipsync_job_duration_seconds", "Run time of a job, from start to end",
                                  ["kind", "state"], buckets=_DURATION_BUCKETS_S, registry=r)
        self.queued = Histogram("lipsync_job_queue_seconds", "Time a job waited in the queue before running",
                                ["kind"], buckets=_DURATION_BUCKETS_S, registry=r)
        self.fps = Histogram("lipsync_job_fps", "Frames processed per second of pipeline wall time",
                             ["kind"], buckets=_FPS_BUCKETS, registry=r)
        self.webhooks = Counter("lipsync_webhook_deliveries_total", "Webhook deliveries by outcome",
                                ["outcome"], registry=r)
        self.running = Gauge("lipsync_jobs_running", "Jobs running now", registry=r)
        self.waiting = Gauge("lipsync_jobs_waiting", "Jobs waiting in the queue now", registry=r)

    def watch_queue(self, running: Callable[[], float], waiting: Callable[[], float]) -> None:
        """Read the running/waiting gauges from the admission queue at scrape time."""
        self.running.set_function(running)
        self.waiting.set_function(waiting)

    def render(self) -> bytes:
        return generate_latest(self.registry)
