"""The review page (service/ui, service/review.py) in a real browser: Debian's headless chromium
driven by Playwright for Python, against the real app served by uvicorn on 127.0.0.1, under the
page's real CSP (so waits poll through DevTools instead of Playwright's in-page eval).

One walk through the whole flow on real media: an edit of two shots (d12's man for 3 s, a cut,
d20's man for 2 s with d11's girl small in a corner, each shot with its own sound) and
yongen.wav uploaded through POST /uploads (a video file first, accepted as the new audio),
a headshot of d12's man cropped from his clip and one of a dog under an id with a quote (its
error beside its row), then a stranger's (not seen, and why), detect-faces as a job (progress
over SSE), the lanes, thumbnails and boxes, the new audio's waveform lane, frame stepping and
the timecode by keyboard, the new sound heard with the preview, a stem per person drawn in its
lane at its offset, expressiveness, a range edited, dragged and set by I/O, a cancelled render,
a finished one compared on one player (Play both/Pause, B for before/after, a wipe, a zoom on
the host's mouth, a looped range). A second walk: stems alone, heard and sent without audio_url.
Screenshots go to tests/artifacts/ (git-ignored); review_result.png is docs/review_page.png.
"""
from __future__ import annotations

import time
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
        live.models_dir = models
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


def wait_until(page, expression: str, timeout: float = 60_000) -> None:
    """Poll a JavaScript expression until it is true. The page's CSP (script-src 'self') forbids the
    eval that Playwright's wait_for_function runs in the page; page.evaluate comes through DevTools."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout / 1000:.0f} s: {expression}")
        page.wait_for_timeout(50)


def detected(page) -> None:
    """Wait for detect-faces to end (a loaded machine may take minutes); fail with what the page says."""
    wait_until(page, "document.querySelector('#detect-progress .label').textContent.startsWith('done') "
                     "|| /^(failed|cancelled|not started)/.test(document.querySelector('#detect-progress .label')"
                     ".textContent)", timeout=300_000)
    label = page.inner_text("#detect-progress .label")
    assert label.startswith("done"), (label, page.inner_text("#inputs"))


def shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def lit_fraction(page, selector: str, x0: float = 0.0, x1: float = 1.0) -> float:
    """Share of the pixel columns between fractions x0 and x1 of a canvas's width that hold paint."""
    return page.eval_on_selector(selector, f"""canvas => {{
        const g = canvas.getContext('2d'), from = Math.floor(canvas.width * {x0}), to = Math.ceil(canvas.width * {x1});
        const data = g.getImageData(from, 0, Math.max(1, to - from), canvas.height).data, w = Math.max(1, to - from);
        let lit = 0;
        for (let x = 0; x < w; x++) {{
            for (let y = 0; y < canvas.height; y++) if (data[(y * w + x) * 4 + 3] > 0) {{ lit++; break; }}
        }}
        return lit / w; }}""")


def test_review_page_walks_the_whole_flow(browser, server, data_dir, edit, headshot, tmp_path):
    not_audio = tmp_path / "voice.wav"
    not_audio.write_text("this is a transcript, not a recording\n" * 20)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.set_default_timeout(60_000)
    outside = []
    page.on("request", lambda request: None if request.url.startswith((server.url, "blob:", "data:"))
            else outside.append(request.url))
    page.goto(server.url + "/")
    wait_until(page, "document.querySelector('#health').textContent.includes('engine')")
    icon = page.evaluate("fetch(document.querySelector('link[rel=icon]').href).then(r => r.status)")
    assert icon == 200

    # 1. inputs: a bad file is refused next to its field; a video file is accepted as the new
    # audio (its sound track); then the real files are uploaded
    page.set_input_files("#audio-file", str(not_audio))
    audio_error = page.locator("[data-field=audio_url] .error")
    audio_error.wait_for(state="visible")
    assert "looks like a text file" in audio_error.inner_text()
    audio_status = "document.querySelector('[data-field=audio_url] .status').textContent.startsWith('uploaded')"
    page.set_input_files("#audio-file", str(data_dir / "video" / "d20.mp4"))
    wait_until(page, audio_status)
    assert audio_error.inner_text() == ""
    page.set_input_files("#audio-file", str(data_dir / "audio" / "yongen.wav"))
    page.set_input_files("#video-file", str(edit))
    page.click("#add-character")
    page.fill("#character-rows .character .char-id", "host")
    page.set_input_files("#character-rows .character .char-file", str(headshot))
    page.click("#add-character")  # an id with a quote; first a headshot of a dog
    second = page.locator("#character-rows .character").nth(1)
    second.locator(".char-id").fill("o'brien")
    second.locator(".char-file").set_input_files(str(data_dir / "image" / "s33.jpg"))
    for status in ("[data-field=audio_url] .status", "[data-field=video_url] .status",
                   "[data-field='characters[0]'] .status", "[data-field='characters[1]'] .status"):
        wait_until(page, f"document.querySelector(\"{status}\").textContent.startsWith('uploaded')")
    assert audio_error.inner_text() == ""

    # an API error shows beside the field it names
    page.fill("#sample-fps", "100")
    page.click("#detect")
    fps_error = page.locator("[data-field=sample_fps] .error")
    fps_error.wait_for(state="visible")
    assert "sample_fps" in fps_error.inner_text()

    # a headshot with no face: the error stands beside that character's row, quote and all,
    # and the progress bar says it failed (not "fetch 2/2 frames")
    page.fill("#sample-fps", "2")
    page.click("#detect")
    row_error = second.locator(".error")
    row_error.wait_for(state="visible")
    assert "o'brien" in row_error.inner_text() and "no detectable face" in row_error.inner_text()
    assert page.inner_text("#detect-error") == ""
    label = page.inner_text("#detect-progress .label")
    assert label.startswith("failed") and "frames" not in label, label
    fetching = page.evaluate("import('/ui/api.js').then(api => api.progressText("
                             "{state: 'running', phase: 'fetch', frames_done: 2, frames_total: 2, percent: 10}))")
    assert fetching == "fetching inputs 2/2 files (10%)"  # was "running: fetch 2/2 frames (10%)"
    second.locator(".char-file").set_input_files(str(data_dir / "image" / "d8.jpg"))  # someone not in the edit
    wait_until(page, "document.querySelector(\"[data-field='characters[1]'] .status\")"
                     ".textContent.startsWith('uploaded')")

    # 2. detect faces as a job: progress, lanes, thumbnails, boxes over the scrubbed video
    page.click("#detect")
    detected(page)
    page.wait_for_selector(".lane-track[data-person=host] .span.syncable")
    assert fps_error.inner_text() == "" and row_error.inner_text() == ""
    assert "done" in page.inner_text("#detect-progress .label")
    assert page.eval_on_selector("#detect-progress .bar", "bar => bar.style.width") == "100%"
    lanes = page.eval_on_selector_all(".lane-track[data-person]", "tracks => tracks.map(t => t.dataset.person)")
    assert len(lanes) == 4 and lanes[:2] == ["host", "o'brien"], lanes
    assert all(lane.startswith("face_") for lane in lanes[2:]), lanes
    unseen = page.locator(".lane-label").filter(has_text="o'brien").locator(".note")
    assert unseen.inner_text() == "not seen"
    why = page.locator(".lane-reason.muted").inner_text()
    assert "matched this headshot at the identity threshold 0.5" in why, why
    faces_n = lanes[2:]
    kinds = {lane: page.eval_on_selector_all(f".lane-track[data-person={lane}] .span:not(.speaking)",
                                             "spans => [...new Set(spans.map(s => s.classList[1]))]")
             for lane in faces_n}
    other = next(lane for lane in faces_n if kinds[lane] == ["syncable"])  # d20's man: a face_N of his own
    girl = next(lane for lane in faces_n if kinds[lane] == ["skipped"])
    page.hover(f".lane-track[data-person={girl}] .span.skipped")
    assert page.get_attribute(f".lane-track[data-person={girl}] .span.skipped", "title") == "skipped: face_too_small"
    assert not page.is_checked(f".lane-label[data-person={girl}] input")  # nothing of hers can be synced
    spans = page.eval_on_selector_all(".lane-track[data-person=host] .span.syncable",
                                      "spans => spans.map(s => [parseFloat(s.style.left), parseFloat(s.style.width)])")
    assert spans[0][0] == 0 and 45 < sum(w for _, w in spans) <= 62, spans  # the first 3 s of 5
    for lane in faces_n:
        after_cut = page.eval_on_selector_all(f".lane-track[data-person={lane}] .span",
                                              "spans => spans.map(s => parseFloat(s.style.left))")
        assert after_cut and min(after_cut) >= 55, (lane, after_cut)  # only after the cut
    shots = page.evaluate("state.detection.shots")
    if shots is not None:  # detect-faces reports shots[]: one boundary, drawn on every lane
        assert len(shots) == 2, shots
        assert page.get_attribute("#timeline", "data-shot-boundaries") == "1"
        assert page.locator(".shot-line").count() == 4  # on every person's lane
    page.wait_for_selector(".lane-label[data-person=host] canvas[data-drawn='1']")
    lit = page.eval_on_selector(".lane-label[data-person=host] canvas", """canvas => {
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let lit = 0; for (let i = 0; i < pixels.length; i += 4) lit += pixels[i] + pixels[i + 1] + pixels[i + 2] > 60;
        return lit / (pixels.length / 4); }""")
    assert lit > 0.5, lit  # a face crop, not a black square
    speaking = page.locator(".lane-track[data-person=host] .span.speaking").count()
    if (SHARED_MODELS / "light-asd").is_dir():
        assert speaking >= 1  # d12's man talks through the clip

    # the new audio's waveform on the same timeline: yongen.wav is 8 s, the edit 5 s, so it fills the lane
    wait_until(page, "Number(document.querySelector('.audio-track canvas.wave').dataset.columns) > 0")
    assert lit_fraction(page, ".audio-track canvas.wave") > 0.8

    # frame-accurate navigation by keyboard: 25 fps from the upload's probe, timecode and frame number
    clock = page.locator("#clock")
    assert clock.inner_text().startswith("00:00:00:00 · frame 0 of 125"), clock.inner_text()
    page.focus(".player")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowLeft")
    assert clock.inner_text().startswith("00:00:01:01 · frame 26 of 125"), clock.inner_text()
    assert page.evaluate("document.querySelector('#original').currentTime") == pytest.approx(26.5 / 25, abs=1e-3)
    page.eval_on_selector("#scrub", "s => { s.value = '1.48'; s.dispatchEvent(new Event('input')); }")
    wait_until(page, "Math.abs(document.querySelector('#original').currentTime - 1.5) < 0.01 "
                     "&& document.querySelector('#overlay').dataset.boxes === '1'")
    assert page.get_attribute("#clock", "data-frame") == "37"

    # hear the new audio against the picture: Space plays the muted video with the decoded sound
    page.focus(".player")
    page.keyboard.press("Space")
    wait_until(page, "!document.querySelector('#original').paused "
                     "&& document.querySelector('#original').dataset.sounds === '1'")
    assert page.evaluate("document.querySelector('#original').muted")  # the video's own sound is off
    assert page.inner_text("#play-original") == "Pause"
    page.keyboard.press("Space")
    wait_until(page, "document.querySelector('#original').paused "
                     "&& document.querySelector('#original').dataset.sounds === '0'")
    assert page.inner_text("#play-original") == "Play"

    # 3. choose: a stem per person (a video file's sound, placed 1 s in) drawn in that person's lane,
    # and expressiveness for the request and for that person
    host_voice = page.locator(".choice[data-person=host] .voice")
    host_voice.locator(".stem-file").set_input_files(str(data_dir / "video" / "d12.mp4"))
    host_voice.locator(".stem-offset").fill("1000")
    wait_until(page, "document.querySelector('.choice[data-person=host] .voice .status')"
                     ".textContent.startsWith('uploaded')")
    stem = ".lane-track[data-person=host] canvas.stem-wave"
    wait_until(page, f"Number(document.querySelector('{stem}').dataset.columns) > 0")
    assert lit_fraction(page, stem, 0.0, 0.18) == 0  # nothing before its offset (1 s of 5)
    assert lit_fraction(page, stem, 0.22, 1.0) > 0.8
    shoot(page, "review_faces.png")
    host_voice.locator(".expressiveness").fill("0.8")
    page.fill("#expressiveness", "0.6")
    assert page.locator(".lane-track[data-person=host] .range.selected").count() == 1  # the default selection

    # the host's range: edited, dragged, then set by I and O at the playhead
    end = page.locator(".choice[data-person=host] .range-row input.end").first
    start = page.locator(".choice[data-person=host] .range-row input.start").first
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
    page.focus(".player")
    for _ in range(4):  # back to frame 0 (playing moved the playhead on), a second at a time
        page.keyboard.press("Shift+ArrowLeft")
    assert page.get_attribute("#clock", "data-frame") == "0"
    page.keyboard.press("Shift+ArrowRight")  # frame 25 (1.00 s)
    page.keyboard.press("i")
    page.keyboard.press("Shift+ArrowRight")  # frame 50 (2.00 s)
    page.keyboard.press("o")
    assert (start.input_value(), end.input_value()) == ("1.00", "2.04")  # out: after frame 50
    assert "1.00–2.04 s" in page.get_attribute(".lane-track[data-person=host] .range", "title")

    # nobody ticked: said once, and gone once someone is ticked again
    page.uncheck(".choice[data-person=host] input[type=checkbox]")
    page.click("#render-button")
    assert "tick at least one person" in page.inner_text("#render-error")
    page.check(".choice[data-person=host] input[type=checkbox]")
    assert page.inner_text("#render-error") == ""
    assert page.locator(".choice[data-person=host] .voice .stem-file").evaluate("f => f.files.length") == 1  # kept
    start.fill("0")
    start.dispatch_event("change")
    end.fill("0")  # a range that ends before it starts: the API's 422 shows in that range's row
    end.dispatch_event("change")
    page.click("#render-button")
    range_error = page.locator(".choice[data-person=host] .range-row .error")
    range_error.wait_for(state="visible")
    assert "faces[0].end_time_ms" in range_error.inner_text()

    # Restore faces says why it cannot be ticked when CodeFormer's weights are missing
    if not (server.models_dir / "codeformer" / "codeformer.pth").is_file():
        assert page.is_disabled("#enhance")
        assert "codeformer/codeformer.pth" in page.inner_text("#enhance-note")

    # 4. render: with that error on screen, typing the fix and pressing Render at once is one click
    # (the error goes as the field is typed in; the field commits on the press without moving the
    # button); a cancelled run first, then a finished one
    end.fill("2.5")  # no change event yet: Render's press commits it
    assert range_error.inner_text() == ""
    with page.expect_request(lambda r: r.url.endswith("/jobs/lipsync") and r.method == "POST") as sent:
        page.click("#render-button")
    body = sent.value.post_data_json
    assert sent.value.headers["content-type"] == "application/json"
    assert body["expressiveness"] == 0.6 and body["audio_url"].startswith("upload://")
    assert len(body["faces"]) == 1, body["faces"]
    face = body["faces"][0]
    assert (face["character_id"], face["start_time_ms"], face["end_time_ms"]) == ("host", 0, 2500)
    assert face["audio_url"].startswith("upload://") and face["audio_offset_ms"] == 1000
    assert face["expressiveness"] == 0.8
    page.wait_for_selector("#cancel:not([hidden])")
    page.click("#cancel")
    wait_until(page, "document.querySelector('#render-error').textContent.includes('cancel')")
    page.click("#render-button")
    wait_until(page, "!document.querySelector('#result').hidden "
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

    # compare on one player: Play both becomes Pause; the original follows the result
    page.click("#play-both")
    wait_until(page, "!document.querySelector('#result-video').paused "
                     "&& !document.querySelector('#compare-original').paused")
    assert page.inner_text("#play-both") == "Pause"
    page.click("#play-both")
    wait_until(page, "document.querySelector('#play-both').textContent === 'Play both'")
    page.eval_on_selector("#result-video", "v => { v.currentTime = 1.2; }")  # the host, lip-synced
    wait_until(page, "Math.abs(document.querySelector('#compare-original').currentTime - 1.2) < 0.2 "
                     "&& !document.querySelector('#compare-original').seeking "
                           "&& !document.querySelector('#result-video').seeking")
    # before / after by key, and the wipe between them
    assert page.get_attribute("#compare", "data-showing") == "wipe"
    page.focus("#compare")
    page.keyboard.press("b")
    assert page.get_attribute("#compare", "data-showing") == "before"
    page.keyboard.press("b")
    assert page.get_attribute("#compare", "data-showing") == "after"
    page.keyboard.press("ArrowRight")
    assert page.get_attribute("#result-clock", "data-frame") == "31"  # 1.2 s is frame 30
    page.fill("#wipe", "40")
    page.dispatch_event("#wipe", "input")
    assert page.get_attribute("#compare", "data-showing") == "wipe"
    assert page.eval_on_selector("#result-video", "v => v.style.clipPath") == "inset(0px 0px 0px 40%)"
    # zoom on the host's mouth: his face is on the left of the first shot, the mouth low in the box
    page.select_option("#zoom", "host")
    zoom = page.locator("#compare-zoom")
    assert zoom.get_attribute("data-zoom") == "host" and "scale(3)" in zoom.evaluate("z => z.style.transform")
    origin_x, origin_y = (float(v.rstrip("%")) for v in zoom.evaluate("z => z.style.transformOrigin").split())
    assert 10 < origin_x < 62 and 35 < origin_y < 90, (origin_x, origin_y)
    shoot(page, "review_result.png")
    # loop the selected range (the host's 0-2.5 s): playing from 2.3 s comes back to its start
    page.check("#result .loop")
    assert page.is_checked("#faces .loop")  # one setting, shown on both players
    page.eval_on_selector("#result-video", "v => { v.currentTime = 2.3; }")
    page.click("#play-both")
    wait_until(page, "Number(document.querySelector('#result-video').dataset.loops || 0) >= 1", timeout=30_000)
    page.click("#play-both")
    assert page.evaluate("document.querySelector('#result-video').currentTime") < 2.5
    assert not outside, outside  # nothing loaded from outside the server
    page.close()


def test_stems_alone_are_heard_and_sent_without_the_new_audio(browser, server, data_dir):
    """No new audio at all: the preview plays the ticked person's stem at its offset (and says
    why it is silent before there is one), and Render sends faces[].audio_url without audio_url."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.set_default_timeout(60_000)
    page.goto(server.url + "/")
    page.set_input_files("#video-file", str(data_dir / "video" / "d12.mp4"))
    wait_until(page, "document.querySelector('[data-field=video_url] .status').textContent.startsWith('uploaded')")
    page.fill("#sample-fps", "1")
    page.click("#detect")
    detected(page)
    page.wait_for_selector(".lane-track[data-person=face_1] .span.syncable")
    assert page.inner_text("#clock").startswith("00:00:00:00 · frame 0 of 183")  # 7.31 s at 25 fps
    assert "no waveform" not in page.inner_text(".audio-label") and page.inner_text(".audio-label .wave-note")
    page.focus(".player")
    page.keyboard.press("Space")
    wait_until(page, "!document.querySelector('#original').paused")
    assert "nothing to hear yet" in page.inner_text("#sound-note")
    page.keyboard.press("Space")
    wait_until(page, "document.querySelector('#original').paused")

    voice = page.locator(".choice[data-person=face_1] .voice")
    voice.locator(".stem-file").set_input_files(str(data_dir / "audio" / "yongen.wav"))
    voice.locator(".stem-offset").fill("500")
    wait_until(page, "Number(document.querySelector('.lane-track[data-person=face_1] canvas.stem-wave')"
                     ".dataset.columns) > 0")
    page.focus(".player")
    page.keyboard.press("Space")
    wait_until(page, "!document.querySelector('#original').paused "
                     "&& document.querySelector('#original').dataset.sounds === '1'")
    assert page.inner_text("#sound-note") == ""
    page.keyboard.press("Space")
    wait_until(page, "document.querySelector('#original').dataset.sounds === '0'")

    wait_until(page, "document.querySelector('.choice[data-person=face_1] .voice .status')"
                     ".textContent.startsWith('uploaded')")
    with page.expect_request(lambda r: r.url.endswith("/jobs/lipsync") and r.method == "POST") as sent:
        page.click("#render-button")
    body = sent.value.post_data_json
    assert "audio_url" not in body
    assert [(f["character_id"], f["audio_offset_ms"]) for f in body["faces"]] == [("face_1", 500)]
    assert body["faces"][0]["audio_url"].startswith("upload://")
    page.wait_for_selector("#cancel:not([hidden])")
    page.click("#cancel")
    wait_until(page, "document.querySelector('#render-button').disabled === false")
    page.close()
