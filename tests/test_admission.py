"""Admission: FIFO order, the bounded queue, withdraw, close; Limits from env and media checks."""
import threading

import pytest

from service.admission import Admission, Busy, Limits, ShuttingDown
from stream.errors import InputError


class Gate:
    """A job body that records its start and blocks until released."""

    def __init__(self, name: str, log: list) -> None:
        self.name, self.log = name, log
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self) -> None:
        self.log.append(self.name)
        self.started.set()
        assert self.release.wait(10)


def test_jobs_run_in_submission_order_one_at_a_time():
    admission = Admission(concurrency=1, max_waiting=10)
    order: list[str] = []
    gates = [Gate(f"job{i}", order) for i in range(6)]
    for i, gate in enumerate(gates):
        admission.submit(f"job{i}", gate)
    assert gates[0].started.wait(5)
    assert admission.running == 1 and admission.waiting == 5
    assert admission.position("job1") == 0 and admission.position("job5") == 4
    for gate in gates:
        assert gate.started.wait(5)
        assert admission.running == 1
        gate.release.set()
    assert admission.wait_idle(5)
    assert order == [f"job{i}" for i in range(6)]


def test_full_queue_refuses_and_frees_up_when_a_job_ends():
    admission = Admission(concurrency=1, max_waiting=2)
    order: list[str] = []
    first, second, third = Gate("a", order), Gate("b", order), Gate("c", order)
    admission.submit("a", first)
    assert first.started.wait(5)
    admission.submit("b", second)
    admission.submit("c", third)
    with pytest.raises(Busy, match="1 job\\(s\\) running and 2 waiting"):
        admission.submit("d", Gate("d", order))
    first.release.set()
    assert second.started.wait(5)
    fourth = Gate("d", order)
    admission.submit("d", fourth)  # the place "b" left is free again
    assert admission.position("d") == 1
    for gate in (second, third, fourth):
        gate.release.set()
    assert admission.wait_idle(5)
    assert order == ["a", "b", "c", "d"]


def test_idle_workers_admit_even_with_no_waiting_room():
    admission = Admission(concurrency=2, max_waiting=0)
    order: list[str] = []
    a, b = Gate("a", order), Gate("b", order)
    admission.submit("a", a)
    admission.submit("b", b)
    assert a.started.wait(5) and b.started.wait(5)
    with pytest.raises(Busy):
        admission.submit("c", Gate("c", order))
    a.release.set(), b.release.set()
    assert admission.wait_idle(5)


def test_withdraw_and_close():
    admission = Admission(concurrency=1, max_waiting=5)
    order: list[str] = []
    running, queued, later = Gate("run", order), Gate("queued", order), Gate("later", order)
    admission.submit("run", running)
    assert running.started.wait(5)
    admission.submit("queued", queued)
    admission.submit("later", later)
    assert admission.withdraw("queued") is True
    assert admission.withdraw("queued") is False and admission.withdraw("run") is False
    assert admission.close() == ["later"]
    with pytest.raises(ShuttingDown):
        admission.submit("new", Gate("new", order))
    assert admission.wait_idle(0.2) is False  # "run" still holds its worker
    running.release.set()
    assert admission.join(5)
    assert order == ["run"]


def test_a_failing_job_does_not_stop_the_worker():
    admission = Admission(concurrency=1, max_waiting=5)
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    admission.submit("bad", boom)
    admission.submit("good", done.set)
    assert done.wait(5)


def test_limits_from_env_and_defaults():
    assert Limits.from_env({}) == Limits()
    limits = Limits.from_env({"LIPSYNC_CONCURRENCY": "2", "LIPSYNC_MAX_WAITING": "0",
                              "LIPSYNC_MAX_DURATION_S": "12.5", "LIPSYNC_MAX_PIXELS": "921600",
                              "LIPSYNC_MAX_BODY_BYTES": "2048", "LIPSYNC_SHUTDOWN_GRACE_S": "3"})
    assert (limits.concurrency, limits.max_waiting, limits.max_duration_s, limits.max_pixels,
            limits.max_body_bytes, limits.shutdown_grace_s) == (2, 0, 12.5, 921600, 2048, 3.0)
    assert Limits().max_pixels == 3840 * 2160 and Limits().max_duration_s == 600
    with pytest.raises(ValueError, match="LIPSYNC_CONCURRENCY"):
        Limits.from_env({"LIPSYNC_CONCURRENCY": "two"})
    with pytest.raises(ValueError):
        Limits.from_env({"LIPSYNC_CONCURRENCY": "0"})


def test_media_limits():
    limits = Limits(max_duration_s=10, max_pixels=1280 * 720)
    limits.check_media("video_url", 10.0, 1280, 720)
    limits.check_media("audio_url", 3.0, None, None)
    with pytest.raises(InputError, match="video_url: the input is 10.5 s long.*at most 10 s"):
        limits.check_media("video_url", 10.5, 640, 360)
    with pytest.raises(InputError, match="1920x1080.*LIPSYNC_MAX_PIXELS") as raised:
        limits.check_media("video_url", 1.0, 1920, 1080)
    assert raised.value.status_code == 422
