"""dlib's face ResNet read from its own model file and run in torch (models/faces/dlib_resnet.py).

The contract: the default backend's descriptors are dlib's own (compute_face_descriptor) up
to float rounding, on real faces, and a damaged model file is a clear ValueError.
Measured on the sample media (24 faces): max |difference| 2.3e-7 per component, euclidean
distance 8.2e-7 (L2-normalised); the bounds below leave ~40x for other CPUs' float order.
"""
from __future__ import annotations

import logging
from pathlib import Path

import av
import cv2
import dlib
import face_recognition_models
import numpy as np
import pytest

from models.faces import default as default_backend
from models.faces.default import (
    DefaultFaceBackend,
    _shape_from_landmarks,
    load_face_descriptor,
)
from models.faces.dlib_resnet import (
    CHIP_SIZE,
    DlibResNet,
    anet_layers,
    read_dlib_resnet,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MODEL = Path(face_recognition_models.face_recognition_model_location())
MAX_COMPONENT_ERROR = 1e-5
MAX_DISTANCE_ERROR = 2e-5


def sample_images() -> list[np.ndarray]:
    """3 frames of each sample clip and the human headshots (RGB)."""
    if not DATA.is_dir():
        pytest.skip(f"sample media not found at {DATA}")
    images = []
    for clip in ("d10", "d11", "d12", "d20", "s29"):
        with av.open(str(DATA / "video" / f"{clip}.mp4")) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in (5, 60, 150):
                    images.append(frame.to_ndarray(format="rgb24"))
                if i >= 150:
                    break
    for name in ("d8", "d9", "d12", "d30", "d38", "s12", "s42", "s5"):
        images.append(np.ascontiguousarray(cv2.imread(str(DATA / "image" / f"{name}.jpg"))[..., ::-1]))
    return images


@pytest.fixture(scope="module")
def backend() -> DefaultFaceBackend:
    return DefaultFaceBackend()


@pytest.fixture(scope="module")
def dlib_recognizer():
    return dlib.face_recognition_model_v1(str(MODEL))


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return MODEL.read_bytes()


def test_backend_descriptors_match_dlibs_own(backend, dlib_recognizer):
    assert backend.descriptor.source == "torch"
    faces_seen = 0
    for image in sample_images():
        faces = backend.detect(image, with_embedding=False)
        if not faces:
            continue
        backend.embed(image, faces)
        shapes = dlib.full_object_detections()
        for face in faces:
            shapes.append(_shape_from_landmarks(face.landmarks))
        ref = np.asarray(dlib_recognizer.compute_face_descriptor(image, shapes), dtype=np.float64)
        ref /= np.linalg.norm(ref, axis=1, keepdims=True)
        got = np.stack([face.embedding for face in faces]).astype(np.float64)
        assert np.abs(got - ref).max() <= MAX_COMPONENT_ERROR
        assert np.linalg.norm(got - ref, axis=1).max() <= MAX_DISTANCE_ERROR
        faces_seen += len(faces)
    assert faces_seen >= 20


def test_batch_equals_one_by_one(backend):
    """Faces embedded in one call (one forward pass) get what each gets alone."""
    images = sample_images()
    chips = []
    for image in images[::4]:
        faces = backend.detect(image, with_embedding=False)
        shapes = dlib.full_object_detections()
        shapes.append(_shape_from_landmarks(faces[0].landmarks))
        chips.append(dlib.get_face_chip(image, shapes[0], CHIP_SIZE, 0.25))
    net = DlibResNet.from_file(MODEL)
    batch = net(np.stack(chips))
    alone = np.concatenate([net(chip[None]) for chip in chips])
    assert batch.shape == (len(chips), 128)
    np.testing.assert_allclose(batch, alone, atol=1e-5)
    # Different faces give different descriptors: the network is not ignoring its input.
    assert np.linalg.norm(batch[0] - batch[1]) > 0.3


def test_reader_reads_the_files_values():
    weights = read_dlib_resnet(MODEL)
    np.testing.assert_allclose(weights.mean_rgb, (122.782, 117.001, 104.298), atol=1e-4)
    assert [w.spec for w in weights.layers] == anet_layers()
    convs = [w for w in weights.layers if w.spec.kind == "con"]
    assert len(convs) == 29 and convs[0].arrays["weight"].shape == (32, 3, 7, 7)
    assert weights.layers[-1].arrays["weight"].shape == (256, 128)
    assert all(np.isfinite(a).all() for w in weights.layers for a in w.arrays.values())


def test_chips_of_the_wrong_shape_are_refused(model_bytes):
    net = DlibResNet.from_file(MODEL)
    with pytest.raises(ValueError, match="uint8 face chips"):
        net(np.zeros((1, 112, 112, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8 face chips"):
        net(np.zeros((1, CHIP_SIZE, CHIP_SIZE, 3), np.float32))
    assert net(np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)).shape == (0, 128)


@pytest.mark.parametrize("keep", [0, 100, 1000, 11_000_000, -4])
def test_truncated_file_is_a_clear_error(tmp_path, model_bytes, keep):
    path = tmp_path / "short.dat"
    path.write_bytes(model_bytes[:keep])
    with pytest.raises(ValueError, match=r"short\.dat: .*(file ends inside|truncated)"):
        read_dlib_resnet(path)


def first_con_nr_offset(model_bytes: bytes) -> int:
    """Byte offset of the first con's nr (7) in the file: after its name, its params tensor
    (version 2, dims n,1,1,1: 11 bytes, then n floats) and num_filters (32)."""
    first = read_dlib_resnet(MODEL).layers[0].arrays
    n_params = first["weight"].size + first["bias"].size
    offset = model_bytes.index(b"con_4") + len(b"con_4") + 11 + 4 * n_params
    assert model_bytes[offset:offset + 10] == b"\x01\x20\x01\x07\x01\x07\x01\x02\x01\x02"  # 32, 7, 7, 2, 2
    return offset + 2


def test_damaged_files_are_clear_errors(tmp_path, model_bytes):
    nr = first_con_nr_offset(model_bytes)
    cases = {
        # Another loss layer where the metric loss belongs.
        "loss": (model_bytes.replace(b"loss_metric_2", b"loss_mmod__2", 1), r"expected the metric loss"),
        # A 5x7 first convolution instead of 7x7, i.e. another network.
        "shape": (model_bytes[:nr + 1] + b"\x05" + model_bytes[nr + 2:], r"con 32 filters 5x7 .* expected 32 filters 7x7"),
        # A broken integer control byte where the nr is.
        "int": (model_bytes[:nr] + b"\x0f" + model_bytes[nr + 1:], r"bad integer control byte 0x0f for layer 1"),
        # Trailing bytes after the last layer.
        "tail": (model_bytes + b"\x00\x01", r"2 bytes left after the last layer"),
        # Not a dlib file at all.
        "text": (b"this is not a model\n" * 50, r"not a dlib face-recognition ResNet file"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / f"{name}.dat"
        path.write_bytes(data)
        with pytest.raises(ValueError, match=message):
            read_dlib_resnet(path)


def test_fallback_to_dlibs_own_call_says_why(monkeypatch, caplog, backend):
    def unreadable(path, threads=1):
        raise ValueError("a test's unreadable file")

    monkeypatch.setattr("models.faces.dlib_resnet.DlibResNet.from_file", unreadable)
    with caplog.at_level(logging.WARNING, logger=default_backend.__name__):
        descriptor = load_face_descriptor(str(MODEL))
    assert descriptor.source == "dlib"
    assert "a test's unreadable file" in caplog.text and "dlib's own descriptor" in caplog.text
    image = sample_images()[0]
    faces = backend.detect(image, with_embedding=False)
    shapes = dlib.full_object_detections()
    shapes.append(_shape_from_landmarks(faces[0].landmarks))
    torch_vec = backend.descriptor.compute(image, shapes)
    dlib_vec = descriptor.compute(image, shapes)
    assert dlib_vec.shape == torch_vec.shape == (1, 128)
    assert np.abs(dlib_vec - torch_vec).max() <= MAX_COMPONENT_ERROR
