"""CodeFormer: official key layout, strict loading, fidelity-weight fusion, align and paste-back."""
from __future__ import annotations

from pathlib import Path

import cv2
import dlib
import numpy as np
import pytest
import torch

from models.checkpoint import CheckpointError
from models.codeformer import (
    CODEFORMER_FILE,
    FFHQ_TEMPLATE_512,
    CodeFormer,
    FaceRestorer,
    align_matrix,
    load_codeformer,
    save_codeformer,
)
from models.liveportrait.crop import five_points_from_68

TINY = dict(dim_embd=64, n_head=4, n_layers=2, codebook_size=64, img_size=64, nf=32, ch_mult=(1, 1, 2),
            emb_dim=32, connect_list=("32", "64"))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = CodeFormer(**TINY)
    with torch.no_grad():  # official init leaves position_emb at zero; make it matter
        net.position_emb.normal_(0, 0.02)
    root = tmp_path_factory.mktemp("models")
    save_codeformer(net, root)
    return root


@pytest.fixture(scope="module")
def faces(data_dir) -> list[tuple[np.ndarray, np.ndarray]]:
    """(RGB image, 5 keypoints) for two real headshots, keypoints from dlib's 68 landmarks."""
    import face_recognition_models

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    out = []
    for name in ("d9.jpg", "s42.jpg"):
        image = cv2.cvtColor(cv2.imread(str(data_dir / "image" / name)), cv2.COLOR_BGR2RGB)
        box = max(detector(image, 0), key=lambda b: b.width() * b.height())
        lm = np.array([[p.x, p.y] for p in predictor(image, box).parts()], np.float32)
        out.append((image, five_points_from_68(lm)))
    return out


def test_full_size_architecture_matches_the_official_checkpoint() -> None:
    net = CodeFormer(dim_embd=512, codebook_size=1024, n_head=8, n_layers=9, connect_list=["32", "64", "128", "256"])
    state = net.state_dict()
    assert len(state) == 515
    assert sum(v.numel() for v in state.values()) == pytest.approx(94.1e6, rel=1e-3)
    # the official fuse_encoder_block / fuse_generator_block indices and channels
    assert net.encoder.taps == {"512": 2, "256": 5, "128": 8, "64": 11, "32": 14, "16": 18}
    assert net.generator.taps == {"16": 6, "32": 9, "64": 12, "128": 15, "256": 18, "512": 21}
    assert tuple(state["quantize.embedding.weight"].shape) == (1024, 256)
    assert tuple(state["position_emb"].shape) == (256, 512)
    assert tuple(state["ft_layers.8.self_attn.in_proj_weight"].shape) == (1536, 512)
    assert tuple(state["ft_layers.0.linear1.weight"].shape) == (1024, 512)
    assert tuple(state["idx_pred_layer.1.weight"].shape) == (1024, 512)
    assert tuple(state["fuse_convs_dict.256.encode_enc.conv1.weight"].shape) == (128, 256, 3, 3)
    assert tuple(state["fuse_convs_dict.32.scale.2.weight"].shape) == (256, 256, 3, 3)
    assert tuple(state["encoder.blocks.17.q.weight"].shape) == (512, 512, 1, 1)
    assert tuple(state["generator.blocks.22.conv2.weight"].shape) == (64, 64, 3, 3)
    assert tuple(state["generator.blocks.24.weight"].shape) == (3, 64, 3, 3)


def test_loader_is_strict_and_names_the_file(tiny_dir: Path, tmp_path: Path) -> None:
    net = load_codeformer(tiny_dir, **TINY)
    saved = torch.load(tiny_dir / CODEFORMER_FILE, weights_only=True)["params_ema"]
    assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())

    state = dict(saved)
    del state["fuse_convs_dict.64.shift.2.bias"]
    state["extra.weight"] = torch.zeros(1)
    (tmp_path / CODEFORMER_FILE).parent.mkdir(parents=True)
    torch.save({"params_ema": state}, tmp_path / CODEFORMER_FILE)
    with pytest.raises(CheckpointError) as err:
        load_codeformer(tmp_path, **TINY)
    message = str(err.value)
    assert "codeformer.pth" in message and "params_ema" in message
    assert "fuse_convs_dict.64.shift.2.bias" in message and "extra.weight" in message

    torch.save({"params": saved}, tmp_path / CODEFORMER_FILE)
    with pytest.raises(CheckpointError, match="no 'params_ema' entry"):
        load_codeformer(tmp_path, **TINY)
    with pytest.raises(CheckpointError, match="file not found"):
        FaceRestorer.load(tmp_path / "elsewhere", **TINY)


def test_fidelity_weight_scales_the_sft_residual(tiny_dir: Path) -> None:
    net = load_codeformer(tiny_dir, **TINY)
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    calls: list[tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]] = []
    fuse = net.fuse_convs_dict["32"]  # the first level the generator fuses

    def hook(_module, args, output):
        enc, dec, w = args
        calls.append((enc.clone(), dec.clone(), w, output.clone()))

    handle = fuse.register_forward_hook(hook)
    try:
        with torch.no_grad():
            out_0 = net(x, w=0.0)
            assert not calls  # w = 0: no fusion at all, as the official forward
            out_half = net(x, w=0.5)
            out_1 = net(x, w=1.0)
    finally:
        handle.remove()
    (enc_h, dec_h, w_h, fused_h), (enc_1, dec_1, w_1, fused_1) = calls
    assert (w_h, w_1) == (0.5, 1.0)
    # the first fused level sees the same decoder feature whatever w is
    assert torch.equal(dec_h, dec_1) and torch.equal(enc_h, enc_1)
    with torch.no_grad():
        scale, shift = fuse.modulation(enc_1, dec_1)
    residual = dec_1 * scale + shift
    assert torch.allclose(fused_1, dec_1 + 1.0 * residual, atol=1e-5)
    assert torch.allclose(fused_h, dec_h + 0.5 * residual, atol=1e-5)
    assert torch.allclose(fused_1 - dec_1, 2 * (fused_h - dec_h), atol=1e-5)
    assert residual.abs().mean() > 1e-3
    assert not torch.allclose(out_0, out_1, atol=1e-3)
    assert not torch.allclose(out_half, out_1, atol=1e-3)


def test_align_maps_keypoints_onto_the_ffhq_template(faces) -> None:
    for _, kps in faces:
        affine = align_matrix(kps, 512)
        mapped = kps @ affine[:, :2].T + affine[:, 2]
        err = np.linalg.norm(mapped - FFHQ_TEMPLATE_512, axis=1)
        assert err.mean() < 10  # a similarity fit of 5 points: a few pixels residual
        a, b = affine[0, 0], affine[0, 1]
        assert affine[1, 1] == pytest.approx(a, rel=1e-4) and affine[1, 0] == pytest.approx(-b, rel=1e-4)
        assert np.allclose(align_matrix(kps, 64), affine / 8, atol=1e-3)


def test_restore_changes_only_the_face_with_a_soft_edge(tiny_dir: Path, faces) -> None:
    restorer = FaceRestorer.load(tiny_dir, device="cpu", fidelity_weight=0.7, batch_size=1, **TINY)
    images = [img for img, _ in faces]
    kps = [[k] for _, k in faces]
    net_out: list[torch.Tensor] = []
    handle = restorer.net.register_forward_hook(lambda _m, _a, out: net_out.append(out.clone()))
    try:
        restored = restorer.restore_frames(images, kps)
    finally:
        handle.remove()
    assert len(net_out) == 2  # batch_size 1: one call per face
    for image, out, (k,), face in zip(images, restored, kps, net_out):
        assert out.shape == image.shape and out.dtype == np.uint8
        inverse = cv2.invertAffineTransform(align_matrix(k, restorer.face_size))
        size = restorer.face_size
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64) @ inverse[:, :2].T + inverse[:, 2]
        x0, y0 = np.floor(corners.min(0)).astype(int)
        x1, y1 = np.ceil(corners.max(0)).astype(int)
        # beyond the face's box: the warped mask fades over one face pixel (in frame pixels) and 1 px more
        m = int(np.ceil(np.sqrt(abs(np.linalg.det(inverse[:, :2]))))) + 1
        outside = np.ones(image.shape[:2], bool)
        outside[max(0, y0 - m):y1 + m, max(0, x0 - m):x1 + m] = False
        assert np.array_equal(out[outside], image[outside])
        # where the mask is 1 the frame holds the network's output warped back
        face_u8 = ((face[0].clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy()
        back = cv2.warpAffine(face_u8, inverse, (image.shape[1], image.shape[0]))
        cx, cy = np.round(k[2]).astype(int)
        centre = np.s_[cy - 3:cy + 3, cx - 3:cx + 3]
        assert np.abs(out[centre].astype(float) - back[centre]).max() <= 1.5
        # ...and that output is not the original face: the centre moved by a mean of 36 and 28 levels
        assert np.abs(out[centre].astype(int) - image[centre].astype(int)).mean() > 10
        # a soft edge: between the face centre and the box border the blend is partial
        row, ref_row, net_row = (a[cy, max(0, x0):cx].astype(float) for a in (out, image, back))
        denom = (net_row - ref_row).sum(axis=1)
        ok = np.abs(denom) > 30
        alpha = (row - ref_row).sum(axis=1)[ok] / denom[ok]
        assert ((alpha > 0.1) & (alpha < 0.9)).any()
    # batching across frames gives the same pixels as one frame at a time
    restorer.batch_size = 2
    both = restorer.restore_frames(images, kps)
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(both, restored))
    # tensor frames in, tensor frames out, same pixels
    as_tensor = restorer.restore(torch.from_numpy(images[0]), kps[0])
    assert isinstance(as_tensor, torch.Tensor) and np.array_equal(as_tensor.numpy(), restored[0])
    with pytest.raises(ValueError, match="fidelity_weight"):
        restorer.restore(images[0], kps[0], fidelity_weight=1.5)
