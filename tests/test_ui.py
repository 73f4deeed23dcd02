"""The review page (service/ui, service/review.py) in a real browser: Debian's headless chromium
driven by Playwright for Python, against the real app served by uvicorn on 127.0.0.1.

One walk through the whole flow on real media: an edit of two shots (d12's man for 3 s, a cut,
d20's man for 2 s with d11's girl small in a corner, each shot with its own sound) and
yongen.wav uploaded through POST /uploads,
a headshot of d12's man cropped from his clip, detect-faces as a job (progress over SSE), the lanes,
thumbnails and boxes, an edited range, a cancelled render, a finished render played side
by side. Screenshots go to tests/artifacts/ (git-ignored).
"""
from __future__ import annotations

from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from jobs.config import Settings
from server import create_app
from stages.audio import load_audio
from tests.conftest import SHARED_MODELS
from tests.live_server import LiveServer
from tests.media import clip_frames, compose

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CUT_S, EDIT_S, RATE = 3.0, 5.0, 16000  # the edit: d12 until the cut, then d20


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) to run "
                    "the review page test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real app; MODELS_DIR is ../shared/models (Light-ASD only) so lanes get speaking spans."""
    workdir = tmp_path_factory.mktemp("ui-workdir")
    models = SHARED_MODELS if (SHARED_MODELS / "light-asd").is_dir() else workdir / "no-weights"
    with LiveServer(create_app(Settings(workdir=workdir, models_dir=models))) as live:
        yield live


@pytest.fixture(scope="module")
def headshot(data_dir, tmp_path_factory) -> Path:
    """The man of d12.mp4 cropped from its first frame (the sample headshots show other people)."""
    with av.open(str(data_dir / "video" / "d12.mp4")) as container:
        frame = next(container.decode(video=0)).to_image()
    path = tmp_path_factory.mktemp("ui-headshot") / "host.png"
    frame.crop((130, 40, 410, 400)).save(path)
    return path


@pytest.fixture(scope="module")
def edit(data_dir, tmp_path_factory) -> Path:
    """Two shots at 512x512, 25 fps, sound and all: d12 on the left for CUT_S seconds, then d20
    on the right until EDIT_S (apart, so no tracker can mistake one man for the other), with
    d11's girl at 120 px in a corner, her face under the 64 px a lip-sync needs."""
    first = clip_frames(data_dir / "video" / "d12.mp4", 320)[:int(CUT_S * 25)]
    second = clip_frames(data_dir / "video" / "d20.mp4", 320)
    small = clip_frames(data_dir / "video" / "d11.mp4", 120)
    sound = np.concatenate([load_audio(data_dir / "video" / "d12.mp4", RATE)[:int(CUT_S * RATE)],
                            load_audio(data_dir / "video" / "d20.mp4", RATE)[:int((EDIT_S - CUT_S) * RATE)]])
    path = tmp_path_factory.mktemp("ui-edit") / "edit.mp4"
    return compose(path, [{"frames": first, "x": 0, "y": 96, "end_s": CUT_S},
                          {"frames": second, "x": 192, "y": 96, "start_s": CUT_S},
                          {"frames": small, "x": 16, "y": 376, "start_s": CUT_S}], 512, 512, EDIT_S, audio=sound)


def shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_review_page_walks_the_whole_flow(browser, server, data_dir, edit, headshot, tmp_path):
    not_audio = tmp_path / "voice.wav"
    not_audio.write_text("this is a transcript, not a recording\n" * 20)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.set_default_timeout(60_000)
    page.goto(server.url + "/")
    page.wait_for_function("document.querySelector('#health').textContent.includes('engine')")

    # 1. inputs: a bad file is refused next to its field, then real files are uploaded
    page.set_input_files("#audio-file", str(not_audio))
    audio_error = page.locator("[data-field=audio_url] .error")
    audio_error.wait_for(state="visible")
    assert "looks like a text file" in audio_error.inner_text()
    page.set_input_files("#audio-file", str(data_dir / "audio" / "yongen.wav"))
    page.set_input_files("#video-file", str(edit))
    page.click("#add-character")
    page.fill("#character-rows .character .char-id", "host")
    page.set_input_files("#character-rows .character .char-file", str(headshot))
    for status in ("[data-field=audio_url] .status", "[data-field=video_url] .status",
                   "[data-field='characters[0]'] .status"):
        page.wait_for_function(f"document.querySelector(\"{status}\").textContent.startsWith('uploaded')")
    assert audio_error.inner_text() == ""

    # an API error shows beside the field it names
    page.fill("#sample-fps", "100")
    page.click("#detect")
    fps_error = page.locator("[data-field=sample_fps] .error")
    fps_error.wait_for(state="visible")
    assert "sample_fps" in fps_error.inner_text()

    # 2. detect faces as a job: progress, lanes, thumbnails, boxes over the scrubbed video
    page.fill("#sample-fps", "2")
    page.click("#detect")
    page.wait_for_selector(".lane-track[data-person=host] .span.syncable")
    assert fps_error.inner_text() == ""
    assert "done" in page.inner_text("#detect-progress .label")
    assert page.eval_on_selector("#detect-progress .bar", "bar => bar.style.width") == "100%"
    lanes = page.eval_on_selector_all(".lane-track", "tracks => tracks.map(t => t.dataset.person)")
    assert len(lanes) == 3 and lanes[0] == "host" and all(lane.startswith("face_") for lane in lanes[1:]), lanes
    kinds = {lane: page.eval_on_selector_all(f".lane-track[data-person={lane}] .span:not(.speaking)",
                                             "spans => [...new Set(spans.map(s => s.classList[1]))]")
             for lane in lanes[1:]}
    other = next(lane for lane in lanes[1:] if kinds[lane] == ["syncable"])  # d20's man: a face_N of his own
    girl = next(lane for lane in lanes[1:] if kinds[lane] == ["skipped"])
    page.hover(f".lane-track[data-person={girl}] .span.skipped")
    assert page.get_attribute(f".lane-track[data-person={girl}] .span.skipped", "title") == "skipped: face_too_small"
    assert not page.is_checked(f".lane-label[data-person={girl}] input")  # nothing of hers can be synced
    spans = page.eval_on_selector_all(".lane-track[data-person=host] .span.syncable",
                                      "spans => spans.map(s => [parseFloat(s.style.left), parseFloat(s.style.width)])")
    assert spans[0][0] == 0 and 45 < sum(w for _, w in spans) <= 62, spans  # the first 3 s of 5
    for lane in lanes[1:]:
        after_cut = page.eval_on_selector_all(f".lane-track[data-person={lane}] .span",
                                              "spans => spans.map(s => parseFloat(s.style.left))")
        assert after_cut and min(after_cut) >= 55, (lane, after_cut)  # only after the cut
    shots = page.evaluate("state.detection.shots")
    if shots is not None:  # detect-faces reports shots[]: one boundary, drawn on every lane
        assert len(shots) == 2, shots
        assert page.get_attribute("#timeline", "data-shot-boundaries") == "1"
        assert page.locator(".shot-line").count() == 3  # on every lane
    page.wait_for_selector(".lane-label[data-person=host] canvas[data-drawn='1']")
    lit = page.eval_on_selector(".lane-label[data-person=host] canvas", """canvas => {
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let lit = 0; for (let i = 0; i < pixels.length; i += 4) lit += pixels[i] + pixels[i + 1] + pixels[i + 2] > 60;
        return lit / (pixels.length / 4); }""")
    assert lit > 0.5, lit  # a face crop, not a black square
    page.eval_on_selector("#scrub", "s => { s.value = '1.5'; s.dispatchEvent(new Event('input')); }")
    page.wait_for_function("Math.abs(document.querySelector('#original').currentTime - 1.5) < 0.01 "
                           "&& document.querySelector('#overlay').dataset.boxes === '1'")
    speaking = page.locator(".lane-track[data-person=host] .span.speaking").count()
    if (SHARED_MODELS / "light-asd").is_dir():
        assert speaking >= 1  # d12's man talks through the clip
    shoot(page, "review_faces.png")

    # 3. choose: the host's range is edited to end at 2.5 s; d20's man is unticked
    end = page.locator(".choice[data-person=host] .range-row input.end").first
    end.fill("2.5")
    end.dispatch_event("change")
    assert "0.00–2.50 s" in page.get_attribute(".lane-track[data-person=host] .range", "title")
    page.uncheck(f".choice[data-person={other}] input[type=checkbox]")
    assert page.locator(f".lane-track[data-person={other}] .range").count() == 0
    track = page.locator(".lane-track[data-person=host]").bounding_box()
    handle = page.locator(".lane-track[data-person=host] .range .handle.end").bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] * 2.0 / EDIT_S, handle["y"] + 5, steps=4)
    page.mouse.up()
    assert float(end.input_value()) == pytest.approx(2.0, abs=0.05)  # dragged to the 2 s mark
    end.fill("0")  # a range that ends before it starts: the API's 422 shows in that range's row
    end.dispatch_event("change")
    page.click("#render-button")
    range_error = page.locator(".choice[data-person=host] .range-row .error")
    range_error.wait_for(state="visible")
    assert "faces[0].end_time_ms" in range_error.inner_text()
    end.fill("2.5")
    end.dispatch_event("change")

    # 4. render: a cancelled run first, then a finished one
    page.click("#render-button")
    page.wait_for_selector("#cancel:not([hidden])")
    page.click("#cancel")
    page.wait_for_function("document.querySelector('#render-error').textContent.includes('cancel')")
    page.click("#render-button")
    page.wait_for_function("!document.querySelector('#result').hidden "
                           "|| document.querySelector('#render-error').textContent !== ''", timeout=300_000)
    assert page.inner_text("#render-error") == ""
    assert page.eval_on_selector("#render-progress .bar", "bar => bar.style.width") == "100%"
    duration = page.eval_on_selector("#result-video", """video => new Promise(resolve => {
        if (video.readyState >= 1) resolve(video.duration);
        else video.addEventListener('loadedmetadata', () => resolve(video.duration), {once: true}); })""")
    assert duration == pytest.approx(EDIT_S, abs=0.15)
    summary = page.inner_text("#result-summary")
    assert "125 frames" in summary and "host: 1 segment" in summary and other not in summary, summary
    href = page.get_attribute("#download", "href")
    assert href.startswith("/results/") and href.endswith("?download=1")
    download = httpx.get(server.url + href)
    assert download.status_code == 200 and download.headers["content-type"] == "video/mp4"
    assert download.headers["content-disposition"].startswith("attachment")
    assert download.content[4:8] == b"ftyp"
    head = httpx.get(server.url + href, headers={"Range": "bytes=0-99"})  # what a <video> seeks with
    assert head.status_code == 206 and head.content == download.content[:100]
    page.click("#play-both")
    page.wait_for_function("!document.querySelector('#result-video').paused "
                           "&& !document.querySelector('#compare-original').paused")
    page.click("#play-both")
    page.eval_on_selector("#result-video", "v => { v.currentTime = 1.2; }")  # the host, lip-synced
    page.wait_for_function("Math.abs(document.querySelector('#compare-original').currentTime - 1.2) < 0.2 "
                           "&& !document.querySelector('#compare-original').seeking "
                           "&& !document.querySelector('#result-video').seeking")
    shoot(page, "review_result.png")
    page.close()
