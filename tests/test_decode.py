from fractions import Fraction

import numpy as np
import pytest

from stages.decode import DecodeStage, probe_video
from stream.errors import MediaError
from tests.media import read_pts, write_video


def test_frames_carry_real_timestamps(data_dir):
    path = data_dir / "video" / "d12.mp4"
    info = probe_video(path)
    frames = list(DecodeStage(path).items())
    assert len(frames) == info.frame_count == 183
    assert [f.pts for f in frames] == read_pts(path)
    assert frames[1].time_ms == pytest.approx(40.0)
    assert frames[0].image.shape == (512, 512, 3) and frames[0].image.dtype == np.uint8


def test_sample_fps_yields_frames_nearest_to_each_tick(data_dir):
    path = data_dir / "video" / "d10.mp4"  # 30 fps, 15 s
    stage = DecodeStage(path, sample_fps=3)
    frames = list(stage.items())
    assert len(frames) == 45
    for k, frame in enumerate(frames):
        assert abs(frame.time_ms - k * 1000 / 3) <= 1000 / 30 / 2 + 1e-6
    assert stage.decoded == probe_video(path).frame_count == 448  # all decoded, 45 converted


def test_variable_frame_rate_is_preserved(tmp_path):
    pts = [0, 1000, 3000, 3500, 7000, 8000, 12000, 12100]
    frames = [np.full((64, 96, 3), 20 * i, np.uint8) for i in range(len(pts))]
    path = write_video(tmp_path / "vfr.mp4", frames, pts=pts, time_base=Fraction(1, 10000))
    decoded = list(DecodeStage(path).items())
    assert [round(f.time_ms) for f in decoded] == [p // 10 for p in pts]


def test_rotation_metadata_is_applied(tmp_path):
    image = np.zeros((64, 96, 3), np.uint8)
    image[:16, :16] = 255  # a white top-left corner
    path = write_video(tmp_path / "rot.mp4", [image] * 3, rotation=90)
    info = probe_video(path)
    assert (info.width, info.height) == (64, 96)
    frame = next(iter(DecodeStage(path).items()))
    assert frame.image.shape == (96, 64, 3)
    corners = {name: frame.image[y, x].mean() for name, (y, x) in
               {"tl": (4, 4), "tr": (4, 59), "bl": (91, 4), "br": (91, 59)}.items()}
    assert max(corners, key=corners.get) == "bl"  # 90 deg counter-clockwise


def test_odd_sizes_decode(tmp_path):
    from stages.encode import EncodeStage
    from stream.frame import Frame
    stage = EncodeStage(tmp_path / "odd.mp4", 101, 75, Fraction(1, 25), 25)
    stage.open()
    for i in range(5):
        stage.process(Frame(i, i, Fraction(1, 25), np.full((75, 101, 3), 100, np.uint8)))
    stage.flush()
    stage.close()
    frames = list(DecodeStage(tmp_path / "odd.mp4").items())
    assert len(frames) == 5 and frames[0].image.shape == (76, 102, 3)


@pytest.mark.parametrize("name,content,expected", [
    ("text.mp4", b"hello, this is not a video\n" * 20, "not a media file"),
    ("page.mp4", b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "HTML page"),
    ("empty.mp4", b"", "empty"),
])
def test_bad_files_raise_clear_errors(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(MediaError, match=expected) as info:
        probe_video(path)
    assert str(path) in str(info.value)
    with pytest.raises(MediaError):
        list(DecodeStage(path).items())


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        probe_video(tmp_path / "nope.mp4")


def test_audio_only_file_has_no_video_stream(data_dir):
    with pytest.raises(MediaError, match="no video stream"):
        probe_video(data_dir / "audio" / "yongen.wav")


def test_truncated_mp4(tmp_path, data_dir):
    data = (data_dir / "video" / "d12.mp4").read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(MediaError, match="corrupt or truncated"):
        probe_video(path)


def test_a_hardware_decoding_request_still_decodes_everywhere(data_dir):
    import av.codec.hwaccel

    if "cuda" not in av.codec.hwaccel.hwdevices_available():
        pytest.skip("this FFmpeg has no CUDA device support")
    path = data_dir / "video" / "d12.mp4"
    accel = av.codec.hwaccel.HWAccel(device_type="cuda", allow_software_fallback=True)
    stage = DecodeStage(path, hwaccel=accel)
    frames = list(stage.items())
    software = list(DecodeStage(path).items())
    assert [f.pts for f in frames] == [f.pts for f in software] and len(frames) == 183
    assert isinstance(frames[0].image, np.ndarray) and frames[0].image.shape == (512, 512, 3)
    assert np.abs(frames[90].image.astype(int) - software[90].image.astype(int)).mean() < 1
    if stage.hwaccel_problem is not None:  # no GPU here: it said why and decoded in software
        assert np.array_equal(frames[90].image, software[90].image)


def test_a_bad_file_is_named_even_when_hardware_decoding_was_asked_for(tmp_path):
    import av.codec.hwaccel

    if "cuda" not in av.codec.hwaccel.hwdevices_available():
        pytest.skip("this FFmpeg has no CUDA device support")
    path = tmp_path / "text.mp4"
    path.write_bytes(b"not a video\n" * 50)
    accel = av.codec.hwaccel.HWAccel(device_type="cuda", allow_software_fallback=True)
    with pytest.raises(MediaError, match="not a media file"):
        list(DecodeStage(path, hwaccel=accel).items())


@pytest.mark.parametrize("name", ["d12.mp4", "s29.mp4"])
def test_frames_are_converted_in_the_sources_own_matrix(data_dir, name):
    """The stage's pixels are `stages.colour.frame_to_rgb`'s (the source's matrix, rounded),
    square and portrait clips; probe_video reads the same colour description."""
    import av

    from stages.colour import ColourSpace, frame_to_rgb

    path = data_dir / "video" / name
    with av.open(str(path)) as container:
        decoded = [f for _, f in zip(range(12), container.decode(video=0))]
    frames = [f.image for _, f in zip(range(12), DecodeStage(path).items())]
    assert len(frames) == len(decoded) == 12
    for image, frame in zip(frames, decoded):
        assert image.dtype == np.uint8 and np.array_equal(image, frame_to_rgb(frame))
    assert probe_video(path).colour == ColourSpace.of(decoded[0])
