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


# --- issue 27: each limit at and past its edge, each message exact ---------------------------
import logging  # noqa: E402

from service.admission import BodyTooLarge  # noqa: E402


@pytest.mark.parametrize("fields,message", [
    ({"concurrency": 0}, "Limits: concurrency must be >= 1, max_waiting >= 0, max_body_bytes >= 1"),
    ({"max_waiting": -1}, "Limits: concurrency must be >= 1, max_waiting >= 0, max_body_bytes >= 1"),
    ({"max_body_bytes": 0}, "Limits: concurrency must be >= 1, max_waiting >= 0, max_body_bytes >= 1"),
    ({"max_duration_s": 0}, "Limits: max_duration_s and max_pixels must be > 0, grace and TTL >= 0"),
    ({"max_pixels": 0}, "Limits: max_duration_s and max_pixels must be > 0, grace and TTL >= 0"),
    ({"shutdown_grace_s": -0.1}, "Limits: max_duration_s and max_pixels must be > 0, grace and TTL >= 0"),
    ({"job_ttl_s": -0.1}, "Limits: max_duration_s and max_pixels must be > 0, grace and TTL >= 0"),
    ({"max_faces": 0}, "Limits: max_faces and max_headshot_pixels must be >= 1, max_characters >= 0"),
    ({"max_characters": -1}, "Limits: max_faces and max_headshot_pixels must be >= 1, max_characters >= 0"),
    ({"max_headshot_pixels": 0}, "Limits: max_faces and max_headshot_pixels must be >= 1, max_characters >= 0"),
])
def test_limits_refuse_a_value_past_its_edge(fields, message):
    with pytest.raises(ValueError) as caught:
        Limits(**fields)
    assert str(caught.value) == message


def test_limits_accept_each_edge():
    limits = Limits(concurrency=1, max_waiting=0, max_body_bytes=1, max_duration_s=0.001, max_pixels=1,
                    shutdown_grace_s=0, job_ttl_s=0, max_faces=1, max_characters=0, max_headshot_pixels=1)
    assert (limits.max_waiting, limits.max_characters, limits.job_ttl_s) == (0, 0, 0)


def test_limits_defaults():
    assert Limits() == Limits(1, 8, 30, 1 << 20, 600.0, 3840 * 2160, 16, 16, 4096 * 4096, 30.0, 3600.0)


def test_every_limit_reads_its_env_var_with_its_type():
    env = {"LIPSYNC_CONCURRENCY": "3", "LIPSYNC_MAX_WAITING": "4", "LIPSYNC_RETRY_AFTER_S": "5",
           "LIPSYNC_MAX_BODY_BYTES": "6", "LIPSYNC_MAX_DURATION_S": "7.5", "LIPSYNC_MAX_PIXELS": "8",
           "LIPSYNC_MAX_FACES": "9", "LIPSYNC_MAX_CHARACTERS": "10", "LIPSYNC_MAX_HEADSHOT_PIXELS": "11",
           "LIPSYNC_SHUTDOWN_GRACE_S": "12", "LIPSYNC_JOB_TTL_S": " 13.5 "}
    limits = Limits.from_env(env)
    assert limits == Limits(3, 4, 5, 6, 7.5, 8, 9, 10, 11, 12.0, 13.5)
    assert all(type(getattr(limits, name)) is int for name in
               ("concurrency", "max_waiting", "retry_after_s", "max_body_bytes", "max_pixels", "max_faces",
                "max_characters", "max_headshot_pixels"))
    assert Limits.from_env({"LIPSYNC_MAX_FACES": "  "}) == Limits()
    with pytest.raises(ValueError) as caught:
        Limits.from_env({"LIPSYNC_MAX_FACES": "2.5"})
    assert str(caught.value) == "LIPSYNC_MAX_FACES='2.5' is not a valid int"
    with pytest.raises(ValueError) as caught:
        Limits.from_env({"LIPSYNC_JOB_TTL_S": "an hour"})
    assert str(caught.value) == "LIPSYNC_JOB_TTL_S='an hour' is not a valid float"


def test_limits_from_the_process_env(monkeypatch):
    monkeypatch.setenv("LIPSYNC_MAX_FACES", "2")
    assert Limits.from_env().max_faces == 2


def test_probe_limits_per_kind():
    limits = Limits(max_duration_s=12, max_pixels=100, max_headshot_pixels=50)
    assert limits.probe_limits("image") == {"max_pixels": 50}
    assert limits.probe_limits("video") == {"max_duration_s": 12, "max_pixels": 100}
    assert limits.probe_limits("audio") == {"max_duration_s": 12, "max_pixels": None}


def test_counts_at_and_past_their_limits():
    limits = Limits(max_faces=2, max_characters=0)
    limits.check_counts(2, 0)
    with pytest.raises(InputError) as caught:
        limits.check_counts(3, 0)
    assert str(caught.value) == ("field 'faces' has 3 entries; this server accepts at most 2 per request "
                                 "(LIPSYNC_MAX_FACES)")
    with pytest.raises(InputError) as caught:
        limits.check_counts(1, 1)
    assert str(caught.value) == ("field 'characters' has 1 entries; this server accepts at most 0 per request "
                                 "(LIPSYNC_MAX_CHARACTERS)")


def test_media_limits_exact_messages_and_edges():
    limits = Limits(max_duration_s=10, max_pixels=100)
    limits.check_media("v", 10.0, 10, 10)  # at both limits
    limits.check_media("v", None, 0, 1000)  # unknown size: nothing to check
    limits.check_media("v", None, 1000, None)
    with pytest.raises(InputError) as caught:
        limits.check_media("video_url", 10.04, None, None)
    assert str(caught.value) == ("video_url: the input is 10.0 s long; this server accepts at most 10 s "
                                 "(LIPSYNC_MAX_DURATION_S); send a shorter clip")
    with pytest.raises(InputError) as caught:
        limits.check_media("video_url", 1.0, 101, 1)
    assert str(caught.value) == ("video_url: the video is 101x1 (101 pixels per frame); this server accepts at "
                                 "most 100 pixels (LIPSYNC_MAX_PIXELS); send a smaller resolution")


def test_admission_arguments_are_checked():
    for concurrency, waiting in ((0, 1), (1, -1)):
        with pytest.raises(ValueError) as caught:
            Admission(concurrency=concurrency, max_waiting=waiting)
        assert str(caught.value) == "concurrency must be >= 1 and max_waiting >= 0"
    admission = Admission()
    assert (admission.concurrency, admission.max_waiting, admission.name) == (1, 8, "job-worker")
    assert admission.closed is False and admission.position("none") is None and admission.withdraw("none") is False


def test_workers_start_on_demand_up_to_concurrency_and_are_named():
    admission = Admission(concurrency=2, max_waiting=5, name="pool")
    order: list[str] = []
    gates = [Gate(f"g{i}", order) for i in range(3)]
    admission.submit("g0", gates[0])
    assert gates[0].started.wait(5) and [w.name for w in admission._workers] == ["pool-1"]
    admission.submit("g1", gates[1])
    admission.submit("g2", gates[2])
    assert gates[1].started.wait(5)
    assert [w.name for w in admission._workers] == ["pool-1", "pool-2"] and all(w.daemon for w in admission._workers)
    assert admission.running == 2 and admission.waiting == 1 and admission.position("g2") == 0
    for gate in gates:
        gate.release.set()
    assert admission.wait_idle(5) and order == ["g0", "g1", "g2"]
    assert admission.close() == [] and admission.closed and admission.join(5)


def test_busy_counts_free_workers_as_room():
    """Two idle workers, max_waiting 1: three submissions fit (two start, one waits), the fourth not."""
    admission = Admission(concurrency=2, max_waiting=1)
    order: list[str] = []
    gates = [Gate(f"g{i}", order) for i in range(3)]
    for i, gate in enumerate(gates):
        admission.submit(f"g{i}", gate)
    assert gates[0].started.wait(5) and gates[1].started.wait(5)
    with pytest.raises(Busy) as caught:
        admission.submit("g3", Gate("g3", order))
    assert str(caught.value) == "2 job(s) running and 1 waiting (queue limit 1); retry later"
    with pytest.raises(ShuttingDown) as caught:
        admission.close()
        admission.submit("g4", Gate("g4", order))
    assert str(caught.value) == "the server is shutting down and accepts no new jobs; retry on another instance"
    for gate in gates:
        gate.release.set()
    assert admission.join(5) and order == ["g0", "g1"]  # g2 was dropped by close()


def test_wait_idle_times_out_and_join_reports_a_stuck_worker():
    admission = Admission(concurrency=1, max_waiting=1)
    gate = Gate("slow", [])
    admission.submit("slow", gate)
    assert gate.started.wait(5)
    assert admission.wait_idle(0.05) is False
    admission.close()
    assert admission.join(0.05) is False
    gate.release.set()
    assert admission.join(5) is True and admission.wait_idle(0) is True


def test_withdraw_wakes_wait_idle_and_a_failed_job_is_logged(caplog):
    admission = Admission(concurrency=1, max_waiting=2)
    gate = Gate("run", [])
    admission.submit("run", gate)
    assert gate.started.wait(5)
    admission.submit("later", lambda: None)
    assert admission.withdraw("later") and admission.waiting == 0
    gate.release.set()
    assert admission.wait_idle(5)

    def boom() -> None:
        raise RuntimeError("boom")

    caplog.set_level(logging.ERROR, logger="service.admission")
    done = threading.Event()
    admission.submit("bad", boom)
    admission.submit("after", done.set)
    assert done.wait(5)
    assert [r.getMessage() for r in caplog.records if r.name == "service.admission"] == [
        "event=worker_error job_id=bad"]


def test_body_too_large_is_413():
    assert BodyTooLarge("too big").status_code == 413
