import threading
import time

import pytest

from stream.pipeline import Pipeline, PipelineCancelled
from stream.stage import BatchStage, FunctionStage, Source, Stage


class Numbers(Source):
    name = "numbers"

    def __init__(self, count: int) -> None:
        self.count = count
        self.produced = 0

    def items(self):
        for i in range(self.count):
            self.produced = i + 1
            yield i


class Endless(Source):
    name = "endless"

    def items(self):
        i = 0
        while True:
            yield i
            i += 1


class PairSums(BatchStage):
    name = "pairs"
    batch_size = 2

    def process_batch(self, batch):
        return [sum(batch)]


class Boom(Stage):
    name = "boom"

    def __init__(self, at: int) -> None:
        self.at = at
        self.closed = False

    def process(self, item):
        if item == self.at:
            raise ValueError(f"bad item {item}")
        return (item,)

    def close(self):
        self.closed = True


def stage_threads_alive() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("stage-") and t.is_alive()]


def test_items_flow_in_order_through_all_stages():
    out = []
    metrics = Pipeline(Numbers(50), [FunctionStage("double", lambda x: 2 * x)], queue_size=2).run(out.append)
    assert out == [2 * i for i in range(50)]
    assert metrics.stage("double").items_in == 50
    assert metrics.stage("numbers").items_out == 50


def test_batch_stage_flushes_partial_batch_at_end_of_stream():
    out = []
    Pipeline(Numbers(5), [PairSums()]).run(out.append)
    assert out == [0 + 1, 2 + 3, 4]


def test_backpressure_bounds_items_in_flight():
    source = Numbers(1000)
    seen = []

    def slow_sink(item):
        seen.append((item, source.produced))
        time.sleep(0.002)

    Pipeline(source, [FunctionStage("pass", lambda x: x)], queue_size=3).run(slow_sink)
    # two queues of 3 plus one item in each thread: the source can never run far ahead.
    assert max(produced - item for item, produced in seen) <= 3 + 3 + 3


def test_first_error_wins_names_the_stage_and_every_thread_exits():
    boom = Boom(at=7)
    start = time.monotonic()
    with pytest.raises(ValueError, match="bad item 7") as info:
        Pipeline(Endless(), [FunctionStage("pass", lambda x: x), boom], queue_size=2).run()
    assert info.value.stage == "boom"
    assert any("boom" in note for note in info.value.__notes__)
    assert boom.closed
    assert time.monotonic() - start < 5
    assert stage_threads_alive() == []


def test_blocked_stage_does_not_hang_shutdown_after_another_fails():
    release = threading.Event()

    class Stuck(Stage):
        name = "stuck"

        def process(self, item):
            if item == 3:
                release.wait(60)  # does not poll the stop event on purpose
            return (item,)

    class FailsLater(Stage):
        name = "fails"

        def process(self, item):
            if item == 2:
                time.sleep(0.2)
                raise RuntimeError("downstream broke")
            return (item,)

    start = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match="downstream broke") as info:
            Pipeline(Endless(), [Stuck(), FailsLater()], queue_size=2, join_timeout_s=1.0).run()
        assert info.value.stage == "fails"
        assert time.monotonic() - start < 5
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while stage_threads_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stage_threads_alive() == []


def test_error_in_output_callback_stops_pipeline():
    def bad_sink(item):
        if item == 5:
            raise KeyError("sink")

    with pytest.raises(KeyError) as info:
        Pipeline(Endless(), [FunctionStage("pass", lambda x: x)], queue_size=2).run(bad_sink)
    assert info.value.stage == "output"
    assert stage_threads_alive() == []


def test_cancel_from_another_thread():
    pipeline = Pipeline(Endless(), [FunctionStage("slow", lambda x: time.sleep(0.01) or x)], queue_size=2)
    threading.Timer(0.3, pipeline.cancel, args=("client went away",)).start()
    start = time.monotonic()
    with pytest.raises(PipelineCancelled, match="client went away"):
        pipeline.run()
    assert time.monotonic() - start < 5
    assert stage_threads_alive() == []


def test_timeout_cancels():
    with pytest.raises(PipelineCancelled, match="timed out"):
        Pipeline(Endless(), [FunctionStage("slow", lambda x: time.sleep(0.01) or x)]).run(timeout_s=0.3)


def test_metrics_count_busy_and_waiting_time():
    metrics = Pipeline(Numbers(20), [FunctionStage("sleepy", lambda x: time.sleep(0.01) or x)], queue_size=1).run()
    sleepy = metrics.stage("sleepy")
    assert sleepy.items_in == 20
    assert sleepy.busy_s >= 0.2
    assert 0 < sleepy.fps <= 100
    assert metrics.stage("numbers").wait_out_s > 0  # the fast source was held back
    assert metrics.as_dict()["stages"][1]["name"] == "sleepy"


def test_run_inline_gives_the_same_outputs_in_one_thread():
    out = []
    metrics = Pipeline(Numbers(7), [FunctionStage("double", lambda x: 2 * x), PairSums()]).run_inline(out.append)
    assert out == [0 + 2, 4 + 6, 8 + 10, 12]
    assert metrics.stage("pairs").items_in == 7 and metrics.stage("pairs").items_out == 4


def _burn(x, seconds=0.01):
    """Keep this thread on the CPU for `seconds` of its own CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass
    return x


@pytest.mark.parametrize("inline", [False, True])
def test_metrics_count_each_stages_own_cpu_time(inline):
    """cpu_s is the stage thread's CPU time: a stage that computes is charged its work, a
    stage that sleeps almost nothing, whatever the wall clock did meanwhile."""
    pipeline = Pipeline(Numbers(10), [FunctionStage("burn", _burn),
                                      FunctionStage("sleepy", lambda x: time.sleep(0.01) or x)], queue_size=1)
    metrics = pipeline.run_inline() if inline else pipeline.run()
    burn, sleepy = metrics.stage("burn"), metrics.stage("sleepy")
    assert burn.cpu_s >= 10 * 0.01
    assert burn.cpu_ms_per_item >= 10.0
    assert sleepy.cpu_s < 0.5 * sleepy.busy_s
    assert metrics.as_dict()["stages"][1]["cpu_ms_per_item"] == round(burn.cpu_ms_per_item, 2)


@pytest.mark.parametrize("inline", [False, True])
def test_opencv_runs_on_the_stage_threads_while_a_pipeline_runs(inline):
    """Inside a run OpenCV has one thread (its pool would spin beside the stages); after
    it, the process has the count it had before."""
    cv2 = pytest.importorskip("cv2")
    before = cv2.getNumThreads()
    seen = []
    pipeline = Pipeline(Numbers(3), [FunctionStage("look", lambda x: seen.append(cv2.getNumThreads()) or x)])
    pipeline.run_inline() if inline else pipeline.run()
    assert seen == [1, 1, 1]
    assert cv2.getNumThreads() == before


def test_overlapping_pipelines_keep_opencv_on_one_thread_until_the_last_ends():
    cv2 = pytest.importorskip("cv2")
    before = cv2.getNumThreads()
    inside, release, seen = threading.Event(), threading.Event(), []

    def hold(x):
        inside.set()
        release.wait(5)
        return x

    first = threading.Thread(target=Pipeline(Numbers(1), [FunctionStage("hold", hold)]).run)
    first.start()
    assert inside.wait(5)
    Pipeline(Numbers(1), [FunctionStage("quick", lambda x: x)]).run()  # ends while the first still runs
    seen.append(cv2.getNumThreads())
    release.set()
    first.join(5)
    assert seen == [1]
    assert cv2.getNumThreads() == before
