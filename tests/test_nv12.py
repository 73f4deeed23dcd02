"""stages/nv12.py: device frames to NV12 encoder frames, against the host conversion."""
from fractions import Fraction

import av
import numpy as np
import pytest

from stages.colour import BT601, ColourSpace, rgb_to_i420
from stages.encode import EncodeSettings, EncodeStage
from stream.frame import Frame
from tests.media import read_frames, read_pts

torch = pytest.importorskip("torch")
from stages.nv12 import nv12_frame, pad_to_even_tensor, rgb_to_nv12  # noqa: E402


@pytest.fixture(scope="module")
def pictures(data_dir) -> list[np.ndarray]:
    return read_frames(data_dir / "video" / "d12.mp4")[:12]


@pytest.mark.parametrize("colour", [BT601, ColourSpace(1, 1), ColourSpace(1, 2)], ids=["bt601", "bt709", "bt709-full"])
def test_conversion_matches_the_host_path(pictures, colour):
    image = pictures[0][:480, :480]
    luma, chroma = rgb_to_nv12(torch.from_numpy(image), colour)
    host = rgb_to_i420(image, colour)
    u = host[480:600].reshape(240, 240)
    v = host[600:].reshape(240, 240)
    assert luma.shape == (480, 480) and chroma.shape == (240, 240, 2) and luma.dtype == torch.uint8
    assert np.abs(luma.numpy().astype(int) - host[:480]).max() <= 1
    assert np.abs(chroma[..., 0].numpy().astype(int) - u).max() <= 1  # both the mean of each 2x2 block
    assert np.abs(chroma[..., 1].numpy().astype(int) - v).max() <= 1
    assert np.abs(chroma[..., 0].numpy().astype(int) - u).mean() < 0.1


def test_odd_sizes_are_padded_by_the_edge_and_the_frame_carries_both_planes():
    image = torch.randint(0, 256, (5, 7, 3), dtype=torch.uint8)
    padded = pad_to_even_tensor(image)
    assert padded.shape == (6, 8, 3) and torch.equal(padded[5, :7], image[4]) and torch.equal(padded[:5, 7], image[:, 6])
    frame = nv12_frame(image)
    assert (frame.format.name, frame.width, frame.height) == ("nv12", 8, 6)
    luma, chroma = rgb_to_nv12(padded)
    planes = frame.to_ndarray()  # NV12 as one (H * 3/2) x W array
    assert np.array_equal(planes[:6], luma.numpy()) and np.array_equal(planes[6:], chroma.numpy().reshape(3, 8))


def test_the_encoder_takes_device_frames_with_their_timestamps(tmp_path, pictures):
    """Tensor frames (here on the CPU device) encode without a trip through numpy RGB and
    decode to the same pictures as host frames do."""
    outputs = {}
    for kind in ("host", "device"):
        out = tmp_path / f"{kind}.mp4"
        encoder = EncodeStage(out, 480, 480, Fraction(1, 12800), 25.0,
                              EncodeSettings(crf=12, pix_fmt="nv12" if kind == "device" else "yuv420p"))
        encoder.open()
        for i, picture in enumerate(pictures):
            image = np.ascontiguousarray(picture[:480, :480])
            encoder.process(Frame(i, i * 512, Fraction(1, 12800), torch.from_numpy(image) if kind == "device" else image))
        encoder.flush()
        encoder.close()
        outputs[kind] = out
    assert read_pts(outputs["device"]) == [i * 512 for i in range(12)]
    with av.open(str(outputs["device"])) as container:
        assert container.streams.video[0].codec_context.pix_fmt in ("nv12", "yuv420p")
    device, host = read_frames(outputs["device"]), read_frames(outputs["host"])
    assert len(device) == len(host) == 12
    assert max(np.abs(d.astype(int) - h.astype(int)).mean() for d, h in zip(device, host)) < 1.0
