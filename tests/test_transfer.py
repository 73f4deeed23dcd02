"""stages/transfer.py: frames to render go up once, everything comes back as host numpy."""
from fractions import Fraction

import numpy as np
import pytest

from stages.transfer import DownloadStage, UploadStage
from stream.frame import Frame

torch = pytest.importorskip("torch")


def frame(index: int, render: bool, writeable: bool = True) -> Frame:
    image = np.random.default_rng(index).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image.flags.writeable = writeable
    return Frame(index, index, Fraction(1, 25), image, notes={"render": ["face"]} if render else {})


def test_only_frames_with_faces_to_render_are_uploaded():
    upload = UploadStage(torch.device("cpu"))
    plain, busy = frame(0, False), frame(1, True)
    original = busy.image.copy()
    (out_plain,), (out_busy,) = upload.process(plain), upload.process(busy)
    assert isinstance(out_plain.image, np.ndarray)
    assert isinstance(out_busy.image, torch.Tensor) and out_busy.image.dtype == torch.uint8
    assert np.array_equal(out_busy.image.numpy(), original) and upload.uploaded == 1


def test_read_only_frames_are_uploaded_as_writable_copies():
    busy = frame(2, True, writeable=False)
    (out,) = UploadStage("cpu").process(busy)
    out.image[0, 0] = 7  # the device path blends in place
    assert int(out.image[0, 0, 0]) == 7


def test_download_returns_host_numpy_and_passes_host_frames():
    download = DownloadStage()
    host = frame(3, False)
    same = host.image
    (out_host,) = download.process(host)
    assert out_host.image is same
    device_frame = frame(4, True)
    expected = device_frame.image.copy()
    device_frame.image = torch.from_numpy(device_frame.image)
    (out,) = download.process(device_frame)
    assert isinstance(out.image, np.ndarray) and np.array_equal(out.image, expected)
    assert download.downloaded == 1


def test_every_frame_goes_up_once_for_an_encoder_that_takes_device_frames():
    upload = UploadStage("cpu", every_frame=True)
    outs = [upload.process(frame(i, render=i % 2 == 0))[0] for i in range(4)]
    assert all(isinstance(out.image, torch.Tensor) for out in outs) and upload.uploaded == 4
