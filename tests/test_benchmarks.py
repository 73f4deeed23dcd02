"""The benchmark harness: a tiny run end to end, and the ratio/target arithmetic.

No timing is asserted: speed targets are reported by the harness, never enforced in tests.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from benchmarks import run

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _row(scenario: str, name: str, fps: float, size: str = "1280x720", faces: int = 2, seconds: float = 10.0,
         memory_only: bool = False, rss: float = 500.0) -> dict:
    return {"input": f"{size} {faces}f {seconds:g}s", "size": size, "seconds": seconds, "input_faces": faces,
            "scenario": scenario, "name": name, "faces": faces, "memory_only": memory_only,
            "frames": 250, "wall_s": 250 / fps, "fps": fps, "cpu_s": 5.0, "peak_rss_mb": rss,
            "stages": [{"name": "encode", "busy_s": 250 / fps / 2, "fps": 2 * fps, "cpu_s": 2.5}]}


def test_ratios_memory_and_targets_from_rows():
    rows = [_row("codec_floor", "codec_floor", 100.0), _row("lipsync 2f", "lipsync", 85.0, rss=600.0),
            _row("sequential 2f", "sequential", 50.0), _row("naive 2f", "naive", 20.0),
            _row("lipsync", "lipsync", 80.0, seconds=60.0, memory_only=True, rss=690.0)]
    run.add_ratios(rows)
    lip = rows[1]
    assert lip["x_floor"] == pytest.approx(0.85) and lip["x_naive"] == pytest.approx(4.25)
    assert lip["cpu_ms_per_frame"] == pytest.approx(20.0)
    assert lip["stages"][0]["busy_share"] == pytest.approx(0.5)
    assert lip["stages"][0]["cpu_ms_per_frame"] == pytest.approx(10.0)  # 2.5 s of CPU over 250 frames
    assert rows[-1]["x_floor"] is None  # the long input has no floor of its own
    ratios = run.memory_ratios(rows)
    assert len(ratios) == 1 and ratios[0]["ratio"] == pytest.approx(1.15)
    checks = {c["target"]: c for c in run.targets(rows, ratios)}
    assert checks["lipsync 720p 2f >= 0.55x codec floor"]["met"]
    assert checks["lipsync 720p 2f <= 25 CPU ms per frame"]["met"]  # 5 s of CPU over 250 frames: 20 ms
    sequential = checks["lipsync 720p 2f over sequential (reported; two cores allow ~1.55x)"]
    assert sequential["value"] == pytest.approx(1.7) and sequential["met"] is None
    assert checks["peak RSS 60 s / 10 s <= 1.2"]["met"]
    slow = [dict(r) for r in rows]
    slow[1] = _row("lipsync 2f", "lipsync", 50.0)
    slow[1]["cpu_s"] = 7.5  # 30 ms per frame
    slow.append(_row("lipsync 1 face", "lipsync", 69.0))
    slow.append(_row("detect_3fps", "detect_3fps", 80.0))
    run.add_ratios(slow)
    missed = {c["target"]: c["met"] for c in run.targets(slow, ratios)}
    assert missed == {"lipsync 720p 2f >= 0.55x codec floor": False, "lipsync 720p 2f <= 25 CPU ms per frame": False,
                      "lipsync 720p 2f over sequential (reported; two cores allow ~1.55x)": None,
                      "lipsync 720p 1 face >= 0.7x codec floor": False, "detect-faces 720p >= 0.8x codec floor": True,
                      "peak RSS 60 s / 10 s <= 1.2": True}


def test_plans_cover_the_issue_scenarios():
    full = run.default_cases(quick=False)
    assert {(c.height, c.faces, c.seconds) for c in full if not c.memory_only} == {
        (720, 1, 10.0), (720, 2, 10.0), (1080, 1, 10.0), (1080, 2, 10.0)}
    assert any(c.memory_only and c.seconds == 60.0 for c in full)
    two_faces = run.scenario_plan(run.Case(1280, 720, 2, 10.0), run.ALL_SCENARIOS)
    labels = [label for label, _, _ in two_faces]
    assert labels[:5] == ["codec_floor", "passthrough", "decode_all", "detect_3fps", "lipsync 1 face"]
    assert "lipsync 2f" in labels and "sequential 2f" in labels and "naive 2f" in labels
    one_face = run.scenario_plan(run.Case(1280, 720, 1, 10.0), ("lipsync_1face", "lipsync"))
    assert one_face == [("lipsync 1f", "lipsync", 1)]
    assert run.scenario_plan(run.Case(1280, 720, 2, 60.0, memory_only=True), run.ALL_SCENARIOS) == [
        ("lipsync", "lipsync", 2)]


def test_unknown_scenario_is_refused():
    with pytest.raises(SystemExit):
        run.main(["--scenarios", "codec_floor,warp_speed"])


def test_tiny_run_writes_a_complete_table(tmp_path, capsys):
    if not (DATA / "video" / "d12.mp4").exists():
        pytest.skip(f"sample media missing: {DATA / 'video'}")
    out = tmp_path / "result.json"
    code = run.main(["--size", "640x360", "--faces", "1", "--seconds", "1", "--inputs", str(tmp_path),
                     "--scenarios", "codec_floor,lipsync,sequential,naive", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    rows = {row["scenario"]: row for row in result["rows"]}
    assert list(rows) == ["codec_floor", "lipsync 1f", "sequential 1f", "naive 1f"]
    assert all(row["frames"] == 25 and row["fps"] > 0 and row["peak_rss_mb"] > 50 for row in rows.values())
    assert rows["codec_floor"]["x_floor"] == 1.0 and rows["naive 1f"]["x_naive"] == 1.0
    lip = rows["lipsync 1f"]
    assert lip["engine"] == "classical" and lip["faces_synced"] == 1
    assert [s["name"] for s in lip["stages"]] == ["decode", "track", "plan", "lipsync", "composite", "encode"]
    assert all(s["items_in"] == 25 for s in lip["stages"][1:])
    assert all(0 <= s["busy_share"] <= 1.01 for s in lip["stages"])
    assert lip["cpu_ms_per_frame"] > 0
    assert all(s["cpu_ms_per_frame"] >= 0 for s in lip["stages"])
    assert sum(s["cpu_ms_per_frame"] for s in lip["stages"]) > 0
    assert lip["job_wall_s"] >= lip["wall_s"] and lip["job_fps"] <= lip["fps"]  # the job holds its render
    for row in (lip, rows["sequential 1f"]):  # every CPU second of the row, by thread
        spans = row["threads"]
        assert set(spans) == {"bank pass", "render"}
        assert spans["render"]["codec"] > 0
        assert sum(sum(g.values()) for g in spans.values()) == pytest.approx(row["cpu_s"], rel=0.02, abs=0.02)
    # Threaded: the stages on threads of their own. Which of them the 0.1 s sampler catches
    # in a 1 s run varies (a quick stage's thread can start and end between two samples, its
    # CPU then "unsampled"); the engine's, busy for most of the run, is always caught.
    stage_threads = {name: cpu for name, cpu in lip["threads"]["render"].items() if name.startswith("stage ")}
    assert stage_threads.get("stage lipsync", 0.0) > 0, stage_threads
    assert rows["sequential 1f"]["threads"]["render"]["main"] > 0  # inline: the stages on the main thread
    assert set(rows["codec_floor"]["threads"]) == {"floor"}
    assert result["targets"] == []  # the targets are about 720p inputs
    printed = capsys.readouterr().out
    assert "| 360p 1f 1s | lipsync 1f |" in printed


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="per-thread CPU needs Linux /proc")
def test_thread_sampler_charges_each_thread_its_own_cpu():
    """A stage thread's CPU goes to its stage, the main thread's to main, by span label; CPU
    spent outside a span is nobody's."""
    from benchmarks.threads import ThreadSampler

    with ThreadSampler(interval_s=0.02) as sampler:
        _burn(0.1)  # before any span
        sampler.begin("render")
        worker = threading.Thread(target=_burn, args=(0.2,), name="stage-track")
        worker.start()
        _burn(0.1)
        worker.join()
        sampler.end()
        sampler.begin("bank pass")
        _burn(0.05)
        sampler.end()
    groups = sampler.groups()
    assert set(groups) == {"render", "bank pass"}
    render = groups["render"]
    # The worker's CPU is its stage's where a sample caught it alive, else "unsampled" (a
    # busy CI process can starve the sampler for the worker's whole 0.2 s); ticks are 10 ms.
    assert render.get("stage track", 0.0) + render["unsampled"] >= 0.15
    assert 0.05 <= render["main"] <= 0.25
    assert 0.02 <= groups["bank pass"]["main"] <= 0.15
    assert "stage track" not in groups["bank pass"]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="per-thread CPU needs Linux /proc")
def test_thread_sampler_charges_child_processes_to_their_span():
    """A child process the span waited for (PocketSphinx runs in one) is charged to the span,
    and `process_cpu_s` counts it, so a row's CPU column holds it."""
    import subprocess
    import sys

    from benchmarks.threads import ThreadSampler, process_cpu_s

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass"
    with ThreadSampler(interval_s=0.02) as sampler:
        before = process_cpu_s()
        sampler.begin("bank pass")
        subprocess.run([sys.executable, "-c", burn], check=True)
        sampler.end()
        spent = process_cpu_s() - before
        sampler.begin("render")
        _burn(0.05)
        sampler.end()
    groups = sampler.groups()
    assert groups["bank pass"]["child processes"] >= 0.15
    assert "child processes" not in groups["render"]
    assert spent >= 0.15
    row = _row("lipsync 2f", "lipsync", 25.0)
    row["threads"] = {"bank pass": {"stage bank": 2.0, "child processes": 0.5}}
    assert "bank pass 10.0 = stages 8.0 + child processes 2.0" in run._threads_cell(row)


def test_threads_cell_adds_up_a_rows_cpu():
    row = _row("lipsync 2f", "lipsync", 25.0)  # 250 frames
    row["threads"] = {"render": {"stage track": 2.5, "stage lipsync": 2.5, "codec": 3.0, "pools": 0.25,
                                 "main": 0.2, "python": 0.05, "unsampled": 0.5},
                      "bank pass": {"stage bank": 2.0, "codec": 0.5}}
    cell = run._threads_cell(row)
    assert "render 36.0 = stages 20.0 + codec 12.0 + pools 1.0 + main 1.0 + unsampled 2.0" in cell
    assert "bank pass 10.0 = stages 8.0 + codec 2.0" in cell
    run.add_ratios([row])
    assert cell in run.format_table([row])


def test_auto_mode_has_a_row_outside_quick_mode():
    plan = run.scenario_plan(run.Case(1280, 720, 2, 10.0), run.ALL_SCENARIOS)
    assert ("lipsync auto mode", "lipsync_auto", 2) in plan
    assert "lipsync_auto" in run.chosen_scenarios(",".join(run.ALL_SCENARIOS), quick=False)
    assert "lipsync_auto" not in run.chosen_scenarios(",".join(run.ALL_SCENARIOS), quick=True)
    assert run.chosen_scenarios("codec_floor,,lipsync", quick=True) == ("codec_floor", "lipsync")


def test_auto_mode_row_says_where_the_job_time_went():
    """The auto row lists each pass (wall s, CPU ms per video frame) and the rest of the job."""
    row = _row("lipsync auto mode", "lipsync_auto", 10.0)  # 25 s of wall, 5 s of CPU, 250 frames
    row.update(render_wall_s=9.0, mouth_bank_ms=2000.0, faces_synced=2, active_speaker_model=True,
               phases={"detect": {"wall_s": 6.0, "cpu_s": 1.0}, "bank": {"wall_s": 2.0, "cpu_s": 1.5},
                       "lipsync": {"wall_s": 9.0, "cpu_s": 2.0}})
    run.add_ratios([row])
    cell = run._phases_cell(row)
    assert "detect 6.0 s (4 ms)" in cell and "bank 2.0 s (6 ms)" in cell and "lipsync 9.0 s (8 ms)" in cell
    assert "outside the passes 8.0 s (2 ms)" in cell  # 25 - 17 s; 5 - 4.5 s of CPU over 250 frames
    assert cell in run.format_table([row])


def test_phase_clock_times_each_pass_of_a_job():
    """PhaseClock sums wall and CPU by pass name over a job's pipelines."""
    from benchmarks.scenarios import PhaseClock
    from stream.pipeline import Pipeline
    from stream.stage import Source, Stage

    class Count(Source):
        name = "decode"

        def __init__(self, n: int) -> None:
            self.n = n

        def items(self):
            yield from range(self.n)

    class Busy(Stage):
        name = "busy"

        def process(self, item):
            sum(range(20000))  # some CPU per item
            return (item,)

    clock, seen = PhaseClock(), []
    for phase, n in (("detect", 5), ("bank", 3), ("detect", 2)):
        clock.run(phase, Pipeline(Count(n), [Busy()]), n, on_output=seen.append)
    assert len(seen) == 10  # the passes ran as through a plain JobContext
    assert set(clock.phases) == {"detect", "bank"}
    assert all(p["wall_s"] > 0 and p["cpu_s"] >= 0 for p in clock.phases.values())


def test_a_lipsync_row_reports_its_whole_job_beside_its_render():
    """fps is the render's; the whole job (its mouth-bank pass before the render) is reported
    beside it, over the same floor, and as a reported (not enforced) target."""
    floor, lip = _row("codec_floor", "codec_floor", 100.0), _row("lipsync 2f", "lipsync", 50.0)
    lip.update(engine_ms_per_face=5.0, mouth_bank_ms=1000.0, decode_ms=300.0, job_wall_s=6.25, job_fps=40.0)
    rows = [floor, lip]
    run.add_ratios(rows)
    assert lip["x_floor"] == pytest.approx(0.5) and lip["x_floor_job"] == pytest.approx(0.4)
    assert "whole job (setup and mouth-bank pass too) 40.0 fps, 0.40x floor" in run.format_table(rows)
    checks = {c["target"]: c for c in run.targets(rows, [])}
    whole = checks["lipsync 720p 2f, whole job with its mouth-bank pass, x codec floor (reported)"]
    assert whole["value"] == pytest.approx(0.4) and whole["met"] is None
