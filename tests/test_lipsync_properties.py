"""jobs/lipsync.py's audio fitting, property-based (hypothesis): for every sync_mode the output
length, the decode options and the fitted audio follow the documented rule (issue 27).

silence: the video's length, audio trimmed or padded with silence; cut_off: the shorter of the
two, the video cut; loop and bounce: the longer, the video extended by looping or bouncing when
the audio is longer. Lengths within 40 ms of each other count as equal.
"""
from __future__ import annotations

import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.lipsync import _fit_audio, _output_plan
from jobs.schema import SYNC_MODES

EXAMPLES = int(os.environ.get("LIPSYNC_HYPOTHESIS_EXAMPLES", "150"))
"""Examples per property; scripts/mutation.py lowers it, since every mutant reruns the file."""
SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None)
MS = st.floats(1, 3_600_000)


@SETTINGS
@given(video=MS, audio=MS, mode=st.sampled_from(SYNC_MODES))
def test_output_plan_for_every_sync_mode(video, audio, mode):
    out, decode, warnings = _output_plan(video, audio, mode)
    if abs(video - audio) < 40:
        assert (out, decode, warnings) == (video, {}, [])
        return
    assert len(warnings) == 1 and warnings[0].endswith(f"(sync_mode={mode})")
    assert warnings[0].startswith(f"audio {audio / 1000:.2f} s, video {video / 1000:.2f} s: ")
    if mode == "silence":
        assert (out, decode) == (video, {})
        assert ("trimmed the audio" if audio > video else "padded the audio with silence") in warnings[0]
    elif mode == "cut_off":
        assert (out, decode) == (min(video, audio), {"max_duration_ms": min(video, audio)})
    elif audio > video:
        assert (out, decode) == (audio, {"extend_to_ms": audio, "extend_mode": mode})
        assert f"extended the video to the audio length by {mode}" in warnings[0]
    else:
        assert (out, decode) == (video, {})
        assert "the audio is shorter; padded it with silence" in warnings[0]


@SETTINGS
@given(video=st.floats(1000, 10_000), gap=st.floats(0, 39.99), mode=st.sampled_from(SYNC_MODES),
       longer=st.sampled_from(["audio", "video"]))
def test_lengths_within_40_ms_are_equal(video, gap, mode, longer):
    audio = video + gap if longer == "audio" else video - gap
    assert _output_plan(video, audio, mode) == (video, {}, [])
    whole = float(round(video))  # 40 ms apart exactly: no longer equal
    out, _, warnings = _output_plan(whole, whole + 40, mode)
    assert len(warnings) == 1 and out in (whole, whole + 40)


@SETTINGS
@given(length=st.integers(0, 4000), rate=st.sampled_from([8000, 16000, 44100, 48000]),
       duration=st.floats(0, 300))
def test_fit_audio_trims_or_pads_with_silence(length, rate, duration):
    samples = np.linspace(-1, 1, length, dtype=np.float32) + 0.5
    fitted = _fit_audio(samples, rate, duration)
    count = int(round(duration / 1000 * rate))
    assert len(fitted) == count and fitted.dtype == np.float32
    kept = min(length, count)
    assert np.array_equal(fitted[:kept], samples[:kept])
    assert not fitted[kept:].any()
