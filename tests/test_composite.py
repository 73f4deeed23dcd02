"""stages/composite.py: the feathered blend, on host arrays and on device tensors alike."""
from fractions import Fraction

import numpy as np
import pytest

from models.engine import MouthPatch
from stages.composite import CompositeStage, blend_patch, copy_image
from stream.frame import Frame

torch = pytest.importorskip("torch")


def patches(rng) -> list[MouthPatch]:
    """Random patches, one inside the frame and two cut by its edges."""
    out = []
    for x, y in ((20, 10), (-7, 30), (50, -5)):
        pixels = rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)
        alpha = rng.random((24, 30), dtype=np.float32)
        out.append(MouthPatch(x, y, pixels, alpha))
    return out


def test_device_blend_matches_the_numpy_blend_within_one_grey_level():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 72, 3), dtype=np.uint8)
    on_host, on_device = image.copy(), torch.from_numpy(image.copy())
    for patch in patches(rng):
        blend_patch(on_host, patch)
        blend_patch(on_device, MouthPatch(patch.x, patch.y, torch.from_numpy(patch.pixels),
                                          torch.from_numpy(patch.alpha)))
    assert on_device.dtype == torch.uint8
    difference = np.abs(on_device.numpy().astype(int) - on_host.astype(int))
    assert difference.max() <= 1
    assert (on_host != image).any()  # the patches did change the frame
    untouched = np.ones(image.shape[:2], bool)
    untouched[10:34, 20:50] = untouched[30:54, 0:23] = untouched[0:19, 50:72] = False
    assert np.array_equal(on_device.numpy()[untouched], image[untouched])


def test_composite_stage_blends_tensor_frames_in_place():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (60, 72, 3), dtype=np.uint8)
    patch = MouthPatch(5, 5, np.full((10, 10, 3), 200, np.uint8), np.ones((10, 10), np.float32))
    tensor_patch = MouthPatch(5, 5, torch.from_numpy(patch.pixels), torch.from_numpy(patch.alpha))
    frame = Frame(0, 0, Fraction(1, 25), torch.from_numpy(image.copy()), notes={"patches": [tensor_patch]})
    (out,) = CompositeStage().process(frame)
    assert isinstance(out.image, torch.Tensor) and "patches" not in out.notes
    assert (out.image[5:15, 5:15] == 200).all() and torch.equal(out.image[20:], torch.from_numpy(image[20:]))


def test_read_only_host_frames_are_copied_before_blending():
    image = np.zeros((20, 20, 3), np.uint8)
    image.flags.writeable = False
    patch = MouthPatch(0, 0, np.full((4, 4, 3), 255, np.uint8), np.ones((4, 4), np.float32))
    (out,) = CompositeStage().process(Frame(0, 0, Fraction(1, 25), image, notes={"patches": [patch]}))
    assert out.image[0, 0, 0] == 255 and image[0, 0, 0] == 0


def test_copy_image_keeps_the_kind():
    array = np.zeros((2, 2, 3), np.uint8)
    tensor = torch.zeros((2, 2, 3), dtype=torch.uint8)
    assert isinstance(copy_image(array), np.ndarray) and copy_image(array) is not array
    copied = copy_image(tensor)
    copied[0, 0, 0] = 1
    assert isinstance(copied, torch.Tensor) and int(tensor[0, 0, 0]) == 0
