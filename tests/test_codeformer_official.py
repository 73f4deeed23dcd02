"""CodeFormer's pre- and post-processing pinned to the official code (sczhou/CodeFormer with
facexlib's FaceRestoreHelper): fill colour, mask kernels and padding, the parsing mask,
the grey path, and the whole restore-and-paste sequence on tiny random networks.

`_official_restore` restates inference_codeformer.py + paste_faces_to_input_image
(upscale 1) from their semantics with cv2 and numpy on a BGR image, as the official code
runs them.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.checkpoint import CheckpointError
from models.codeformer import (
    FFHQ_TEMPLATE_512,
    FILL_RGB,
    PARSENET_FILE,
    CodeFormer,
    FaceRestorer,
    ParseNet,
    align_matrix,
    load_parsenet,
    save_parsenet,
)
from models.codeformer.align import align_face, is_gray
from models.codeformer.parsing import PARSE_CLASSES_KEPT
from models.codeformer.paste import erode, gaussian_blur, paste_face
from tests.test_codeformer import TINY, faces  # noqa: F401 - fixture

TINY_PARSE = {"in_size": 128, "out_size": 128, "min_feat_size": 32, "base_ch": 8, "res_depth": 2, "ch_range": (8, 16)}


@pytest.fixture(scope="module")
def nets() -> tuple[CodeFormer, ParseNet]:
    torch.manual_seed(5)
    net = CodeFormer(**TINY)
    with torch.no_grad():
        net.position_emb.normal_(0, 0.02)
    parser = ParseNet(**TINY_PARSE)
    with torch.no_grad():  # a parser that labels some pixels as face and some as not
        for m in parser.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval(), parser.eval()


def _official_is_gray(bgr: np.ndarray, threshold: float = 10) -> bool:
    b, g, r = (bgr[..., i].astype(np.int16) for i in range(3))
    return ((b - g).var() + (g - r).var() + (r - b).var()) / 3.0 <= threshold


def _adain_npy(content: np.ndarray, style: np.ndarray) -> np.ndarray:
    def stats(x):
        flat = x.reshape(-1, x.shape[2])
        return flat.mean(0).reshape(1, 1, -1), np.sqrt(flat.var(0) + 1e-5).reshape(1, 1, -1)

    s_mean, s_std = stats(style)
    c_mean, c_std = stats(content)
    return (content - c_mean) / c_std * s_std + s_mean


def _official_restore(net: CodeFormer, parser: ParseNet | None, rgb: np.ndarray, kps_list, w: float) -> np.ndarray:
    size = net.img_size
    bgr = rgb[..., ::-1].copy()
    h, wd = bgr.shape[:2]
    template = FFHQ_TEMPLATE_512 * (size / 512.0)
    gray = _official_is_gray(bgr)
    upsample = cv2.resize(bgr, (wd, h), interpolation=cv2.INTER_LINEAR)
    for kps in kps_list:
        affine = cv2.estimateAffinePartial2D(np.asarray(kps, np.float32), template, method=cv2.LMEDS)[0]
        crop = cv2.warpAffine(bgr, affine, (size, size), borderMode=cv2.BORDER_CONSTANT, borderValue=(135, 133, 132))
        t = torch.from_numpy((crop[..., ::-1] / 255.0).astype(np.float32).transpose(2, 0, 1).copy())
        t = ((t - 0.5) / 0.5)[None]
        with torch.no_grad():
            out = net(t, w=w, adain=True)[0].clamp(-1, 1)
        restored = ((out + 1) / 2).permute(1, 2, 0).numpy()[..., ::-1]
        restored = (restored * 255.0).round().astype(np.uint8)
        if gray:
            b, g, r = (restored[..., i] for i in range(3))
            restored = np.repeat((0.2989 * r + 0.5870 * g + 0.1140 * b)[..., None], 3, axis=2)
            restored = _adain_npy(restored, crop)
        upsample = _official_paste(upsample, restored, affine, parser)
    return np.clip(upsample, 0, 255).astype(np.uint8)[..., ::-1]


def _official_paste(upsample: np.ndarray, restored: np.ndarray, affine: np.ndarray,
                    parser: ParseNet | None) -> np.ndarray:
    """One face of facexlib's paste_faces_to_input_image (upscale 1), BGR, float result."""
    size = restored.shape[0]
    h, wd = upsample.shape[:2]
    inverse = cv2.invertAffineTransform(affine)
    # The grey path's face is float64, which this OpenCV warps on a 1/32 px grid while it
    # warps uint8 and float32 exactly: up to 4 levels on a 64 px face pasted 7x larger.
    # That is OpenCV's precision, not CodeFormer's processing, so it is warped as float32.
    warp_input = restored.astype(np.float32) if restored.dtype == np.float64 else restored
    inv_restored = cv2.warpAffine(warp_input, inverse, (wd, h))
    inv_mask = cv2.warpAffine(np.ones((size, size), np.float32), inverse, (wd, h))
    inv_mask_erosion = cv2.erode(inv_mask, np.ones((2, 2), np.uint8))
    pasted = inv_mask_erosion[:, :, None] * inv_restored
    w_edge = int(np.sum(inv_mask_erosion) ** 0.5) // 20
    center = cv2.erode(inv_mask_erosion, np.ones((w_edge * 2, w_edge * 2), np.uint8))
    soft = cv2.GaussianBlur(center, (w_edge * 2 + 1, w_edge * 2 + 1), 0)[:, :, None]
    if parser is not None:
        n = parser.in_size
        face_input = cv2.resize(restored, (n, n), interpolation=cv2.INTER_LINEAR)
        face_input = cv2.cvtColor(face_input.astype("float32") / 255.0, cv2.COLOR_BGR2RGB)
        face_input = (torch.from_numpy(face_input.transpose(2, 0, 1).copy()) - 0.5) / 0.5
        with torch.no_grad():
            labels = parser(face_input[None])[0].argmax(dim=1).squeeze().numpy()
        parse = np.zeros(labels.shape)
        for idx, colour in enumerate(PARSE_CLASSES_KEPT):
            parse[labels == idx] = colour
        parse = cv2.GaussianBlur(parse, (101, 101), 11)
        parse = cv2.GaussianBlur(parse, (101, 101), 11)
        parse[:10, :] = 0
        parse[-10:, :] = 0
        parse[:, :10] = 0
        parse[:, -10:] = 0
        parse = cv2.resize(parse / 255.0, (size, size))
        parse = cv2.warpAffine(parse, inverse, (wd, h), flags=3)[:, :, None]
        fuse = (parse < soft).astype("int")
        soft = parse * fuse + soft * (1 - fuse)
    return soft * pasted + (1 - soft) * upsample


def _at_top_edge(image: np.ndarray, kps: np.ndarray) -> np.ndarray:
    """The face moved up so that its template square leaves the frame at the top."""
    shifted = kps.copy()
    shifted[:, 1] -= kps[:, 1].min() - 0.12 * np.ptp(kps[:, 0]) * 2
    return shifted


# ---------------------------------------------------------------- fill colour


def test_fill_outside_the_frame_is_the_bgr_grey_in_rgb_order(faces) -> None:  # noqa: F811
    image, kps = faces[0]
    kps = _at_top_edge(image, kps)
    affine = align_matrix(kps, 512)
    official = cv2.warpAffine(image[..., ::-1].copy(), affine, (512, 512), borderValue=(135, 133, 132))[..., ::-1]
    frame = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    ours = align_face(frame, affine, 512)[0].permute(1, 2, 0).numpy()
    assert FILL_RGB == (132.0, 133.0, 135.0)
    assert tuple(ours[0, 256]) == (132, 133, 135) and tuple(official[0, 256]) == (132, 133, 135)
    diff = np.abs(ours - official)
    assert diff.max() <= 1 and diff.mean() < 0.05  # cv2 interpolates in 1/32 px fixed point


# ---------------------------------------------------------------- mask kernels and padding


@pytest.mark.parametrize("kernel", [0, 2, 4, 10, 3])
def test_erosion_matches_cv2_with_its_anchor_and_border(kernel: int) -> None:
    rng = np.random.default_rng(kernel)
    mask = (rng.random((40, 50)) > 0.2).astype(np.float32) * rng.random((40, 50)).astype(np.float32)
    mask[:, :5] = 1.0  # touches the left edge: cv2 ignores pixels outside
    official = cv2.erode(mask, np.ones((kernel, kernel), np.uint8))
    ours = erode(torch.from_numpy(mask)[None, None], kernel)[0, 0].numpy()
    assert np.array_equal(ours, official)


def test_even_kernels_erode_one_pixel_more_up_and_left() -> None:
    mask = np.zeros((12, 12), np.float32)
    mask[3:9, 3:9] = 1
    ours = erode(torch.from_numpy(mask)[None, None], 2)[0, 0].numpy()
    assert np.array_equal(np.nonzero(ours.any(0))[0], np.arange(4, 9))  # lost column 3, kept column 8


@pytest.mark.parametrize("ksize", [1, 3, 5, 7, 9, 45])
def test_blur_matches_cv2_reflect_101_at_the_frame_edge(ksize: int) -> None:
    mask = np.zeros((80, 90), np.float32)
    mask[0:30, 20:70] = 1.0  # a face mask cut by the top of the frame
    official = cv2.GaussianBlur(mask, (ksize, ksize), 0)
    ours = gaussian_blur(torch.from_numpy(mask)[None, None], ksize)[0, 0].numpy()
    assert np.abs(ours - official).max() < 1e-5
    if ksize == 45:  # zero padding (the old paste) lost half the alpha along the top edge
        g = cv2.getGaussianKernel(45, 0).astype(np.float32)
        zero_padded = cv2.sepFilter2D(mask, -1, g, g, borderType=cv2.BORDER_CONSTANT)
        assert ours[0, 45] > 0.95 and zero_padded[0, 45] < 0.6


# ---------------------------------------------------------------- grey input


def test_is_gray_is_the_official_channel_difference_variance() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (30, 30, 1), np.uint8).repeat(3, axis=2)
    noisy = base.astype(int)
    noisy[..., 0] += rng.integers(-3, 4, (30, 30))
    noisy = np.clip(noisy, 0, 255).astype(np.uint8)
    colour = rng.integers(0, 256, (30, 30, 3), np.uint8)
    for image in (base, noisy, colour):
        t = torch.from_numpy(image).permute(2, 0, 1).float()
        assert is_gray(t) == _official_is_gray(image[..., ::-1])
    assert is_gray(torch.from_numpy(noisy).permute(2, 0, 1).float())
    assert not is_gray(torch.from_numpy(colour).permute(2, 0, 1).float())


# ---------------------------------------------------------------- parsing network


def test_parsenet_has_the_official_keys_and_loads_strictly(nets, tmp_path: Path) -> None:
    _, parser = nets
    keys = set(parser.state_dict())
    for key in ("encoder.0.conv2d.weight", "encoder.0.conv2d.bias", "encoder.1.conv1.conv2d.weight",
                "encoder.1.conv1.norm.norm.running_mean", "encoder.1.shortcut_func.conv2d.bias",
                "body.0.conv2.norm.norm.weight", "decoder.0.shortcut_func.conv2d.weight",
                "out_mask_conv.conv2d.weight", "out_img_conv.conv2d.bias"):
        assert key in keys
    assert "encoder.1.conv1.conv2d.bias" not in keys  # BatchNorm convs have no bias
    assert "body.0.shortcut_func.conv2d.weight" not in keys  # identity shortcut
    full = ParseNet()
    assert full.out_mask_conv.conv2d.out_channels == 19 and len(full.encoder) == 5 and len(full.body) == 10
    assert load_parsenet(tmp_path, **TINY_PARSE) is None  # absent: the documented fallback
    save_parsenet(parser, tmp_path)
    loaded = load_parsenet(tmp_path, **TINY_PARSE)
    assert loaded is not None and not loaded.training
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    assert torch.equal(loaded(x)[0], parser(x)[0])
    state = parser.state_dict()
    state.pop("out_mask_conv.conv2d.weight")
    torch.save(state, tmp_path / PARSENET_FILE)
    with pytest.raises(CheckpointError, match="out_mask_conv"):
        load_parsenet(tmp_path, **TINY_PARSE)


# ---------------------------------------------------------------- end to end


def _frames(faces) -> list[tuple[np.ndarray, list[np.ndarray]]]:  # noqa: F811
    (image, kps), (image2, kps2) = faces
    return [(image, [kps]), (image, [_at_top_edge(image, kps)]), (image2, [kps2])]


@pytest.mark.parametrize("use_parse", [False, True])
def test_paste_equals_the_official_paste_within_one_grey_level(nets, faces, use_parse: bool) -> None:  # noqa: F811
    _, parser = nets
    for image, (kps,) in _frames(faces):
        affine = align_matrix(kps, 64)
        # a "restored" face the paste visibly changes: the aligned face with red and blue swapped
        restored = cv2.warpAffine(image, affine, (64, 64), borderValue=(132, 133, 135))[..., ::-1].copy()
        official = _official_paste(image[..., ::-1].astype(np.float64), restored[..., ::-1].copy(), affine,
                                   parser if use_parse else None)[..., ::-1]
        frame = torch.from_numpy(image).permute(2, 0, 1)[None].float()
        face = torch.from_numpy(restored).permute(2, 0, 1)[None].float()
        masks = FaceRestorer(nets[0], device="cpu", parser=parser).parse_masks(face) if use_parse else None
        paste_face(frame, face, affine, masks)
        ours = frame[0].permute(1, 2, 0).double().numpy()
        # before the final cast: within one grey level (cv2 rounds its uint8 warp its own way)
        assert np.abs(ours - official).max() <= 1 + 1e-3
        assert (np.abs(ours - official) > 0.5).mean() < 0.01
        # after it (both truncate): a level more only where a value sat just under an integer
        cast = np.abs(ours.astype(np.uint8).astype(int) - np.clip(official, 0, 255).astype(np.uint8).astype(int))
        assert (cast > 1).mean() < 1e-5
        assert np.abs(ours - image).max() > 10  # the face really went in


@pytest.mark.parametrize("use_parse", [False, True])
def test_restore_and_paste_follow_the_official_sequence(nets, faces, use_parse: bool) -> None:  # noqa: F811
    net, parser = nets
    restorer = FaceRestorer(net, device="cpu", fidelity_weight=0.5, batch_size=2,
                            parser=parser if use_parse else None)
    for image, kps_list in _frames(faces):
        official = _official_restore(net, parser if use_parse else None, image, kps_list, 0.5)
        ours = restorer.restore(image, kps_list)
        diff = np.abs(ours.astype(int) - official.astype(int))
        # cv2's crop differs by one level in a few pixels, which the random network carries
        # into its output; with the paste's own level (see above) that is at most 2, rarely
        assert diff.max() <= 2, diff.max()
        assert (diff > 1).mean() < 1e-4 and (diff > 0).mean() < 0.05
        assert np.abs(ours.astype(int) - image.astype(int)).max() > 10  # the face really changed


def test_grey_input_is_restored_grey_as_the_official(nets, faces) -> None:  # noqa: F811
    net, _ = nets
    image, kps = faces[0]
    grey = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    restorer = FaceRestorer(net, device="cpu", fidelity_weight=0.5)
    ours = restorer.restore(grey, [kps])
    official = _official_restore(net, None, grey, [kps], 0.5)
    assert np.abs(ours.astype(int) - official.astype(int)).max() <= 1
    spread = ours.astype(int).max(2) - ours.astype(int).min(2)
    assert spread.max() <= 2  # still grey: colour output of the network was made grey
    colour_net = restorer.restore_tensor(align_face(torch.from_numpy(grey).permute(2, 0, 1)[None].float(),
                                                    align_matrix(kps, net.img_size), net.img_size))
    assert (colour_net.max(1).values - colour_net.min(1).values).max() > 10  # the network itself gives colour
