import numpy as np
import pytest

from stages.audio import load_audio
from stream.errors import MediaError


def test_wav_and_mp4_audio_decode_to_mono_float(data_dir):
    speech = load_audio(data_dir / "audio" / "yongen.wav", 16000)
    assert speech.dtype == np.float32 and speech.ndim == 1
    assert len(speech) == pytest.approx(8.0 * 16000, abs=160)
    assert 0.1 < np.abs(speech).max() <= 1.0
    track = load_audio(data_dir / "video" / "d12.mp4", 8000)
    assert len(track) == pytest.approx(7.3 * 8000, rel=0.02)


def test_m4a_round_trip(tmp_path, data_dir):
    import av
    speech = load_audio(data_dir / "audio" / "yongen.wav", 16000)
    path = tmp_path / "speech.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000, layout="mono")
        for start in range(0, len(speech), 1024):
            frame = av.AudioFrame.from_ndarray(speech[None, start:start + 1024].copy(), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    again = load_audio(path, 16000)
    assert len(again) == pytest.approx(len(speech), abs=2048)
    n = (min(len(again), len(speech)) // 320) * 320
    envelope = lambda x: np.sqrt((x[:n].reshape(-1, 320) ** 2).mean(axis=1))  # 20 ms RMS
    assert np.corrcoef(envelope(again), envelope(speech))[0, 1] > 0.9


def test_video_without_audio(tmp_path):
    from tests.media import write_video
    path = write_video(tmp_path / "silent.mp4", [np.zeros((32, 32, 3), np.uint8)] * 3)
    with pytest.raises(MediaError, match="no audio stream"):
        load_audio(path)


@pytest.mark.parametrize("rate", [16000, 44100])
def test_stereo_is_mixed_down_as_the_mean_of_its_channels(tmp_path, rate):
    """Left 0.6, right 0.2 of the same 300 Hz tone: the mix is 0.4 (swresample's float
    downmix gave (0.6 + 0.2) * 0.707 = 0.57, 3 dB too loud); opposite channels cancel."""
    import av
    t = np.arange(2 * rate) / rate
    tone = np.sin(2 * np.pi * 300 * t)
    for name, left, right, peak in (("differ", 0.6 * tone, 0.2 * tone, 0.4), ("opposite", 0.5 * tone, -0.5 * tone, 0.0)):
        path = tmp_path / f"{name}-{rate}.wav"
        pcm = (np.stack([left, right]) * 32767).round().astype(np.int16)
        with av.open(str(path), "w") as out:
            stream = out.add_stream("pcm_s16le", rate=rate, layout="stereo")
            for start in range(0, pcm.shape[1], 1024):
                frame = av.AudioFrame.from_ndarray(pcm[:, start:start + 1024].copy(), format="s16p", layout="stereo")
                frame.sample_rate, frame.pts = rate, start
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        mono = load_audio(path, 16000)
        assert len(mono) == pytest.approx(2 * 16000, abs=64)
        middle = mono[1000:-1000]  # away from the resampler's edges
        assert np.abs(middle).max() == pytest.approx(peak, abs=0.01)
        if peak:
            rms = np.sqrt(np.mean(middle ** 2))
            assert rms == pytest.approx(peak / np.sqrt(2), rel=0.02)
