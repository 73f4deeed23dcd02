"""models/musetalk/crop_device.py: the torch crop, paste and mask steps against the official OpenCV ones."""
import numpy as np
import pytest
import torch

from models.musetalk.crop import (
    CropGeometry,
    face_crop,
    finish_mask,
    paste_box_for,
    place_face,
    read_region,
)
from models.musetalk.crop_device import (
    face_crop_tensor,
    finish_mask_tensor,
    place_face_tensor,
    resize_image,
)
from tests.media import read_frames


@pytest.fixture(scope="module")
def frame(data_dir) -> np.ndarray:
    return read_frames(data_dir / "video" / "d12.mp4")[0]  # 512x512, a face around x 150-370, y 120-410


def geometry(face_box) -> CropGeometry:
    return CropGeometry(face_box, paste_box_for(face_box))


def test_read_region_keeps_tensors_on_their_device_with_zeros_outside(frame):
    image = torch.from_numpy(frame)
    box = (-10, 500, 30, 530)  # past the left and bottom edges
    region = read_region(image, box)
    assert isinstance(region, torch.Tensor) and region.shape == (30, 40, 3)
    assert np.array_equal(region.numpy(), read_region(frame, box))
    assert not region[12:].any() and not region[:, :10].any()


def test_face_crop_is_close_to_the_official_lanczos_crop(frame):
    for box in ((160, 180, 360, 400), (200, 250, 280, 330)):  # shrinking and enlarging to 256
        g = geometry(box)
        official = face_crop(frame, g).astype(int)
        ours = face_crop_tensor(torch.from_numpy(frame), g)
        assert ours.shape == (256, 256, 3) and ours.dtype == torch.uint8
        difference = np.abs(ours.numpy().astype(int) - official)
        assert difference.mean() < 0.5 and np.percentile(difference, 99) <= 2


def test_place_face_matches_opencv_bilinear(frame):
    g = geometry((160, 180, 360, 400))
    paste = read_region(frame, g.paste_box)
    generated = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    official = place_face(paste, g, generated).astype(int)
    ours = place_face_tensor(torch.from_numpy(paste), g, torch.from_numpy(generated)).numpy().astype(int)
    assert np.abs(ours - official).max() <= 1
    fy1 = g.face_in_paste[1]
    assert np.array_equal(ours[:fy1], paste[:fy1])  # outside the face box: the frame's own pixels


@pytest.mark.parametrize("face_box", [(100, 100, 180, 190), (160, 180, 360, 400)])  # 7-tap table and a computed Gaussian
def test_finish_mask_matches_opencv(face_box):
    g = geometry(face_box)
    side = g.paste_side
    mask = np.zeros((side, side), np.uint8)
    mask[side // 3 : side - 10, 12 : side - 12] = 255
    mask[side // 2 + 5 : side // 2 + 9] = 90
    official = finish_mask(mask, g)
    ours = finish_mask_tensor(torch.from_numpy(mask), g)
    assert ours.dtype == torch.float32 and ours.shape == (side, side)
    assert np.abs(ours.numpy() - official).max() <= 1 / 255 + 1e-6
    assert official.max() > 0.99


def test_resize_image_handles_planes_and_rgb():
    plane = torch.arange(16, dtype=torch.uint8).reshape(4, 4) * 10
    assert resize_image(plane, (8, 8), "bilinear").shape == (8, 8)
    rgb = torch.zeros((4, 6, 3), dtype=torch.uint8)
    assert resize_image(rgb, (2, 3), "bicubic", antialias=True).shape == (2, 3, 3)
