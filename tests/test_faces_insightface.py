"""InsightFace backend on tiny synthetic ONNX models with buffalo_l's real signatures.

The models are built here with onnx.helper and loaded through the real insightface code:
- det_10g (SCRFD): input [1, 3, H, W], 9 outputs (scores [K, 1], boxes [K, 4], kps [K, 10]
  for strides 8/16/32, 2 anchors a cell). Only stride 32 can fire: its score is high where
  a 32x32 cell is entirely white; its box and kps are constants (distances, in strides).
- 1k3d68: input [1, 3, 192, 192], output [1, 3309]: a constant 3D face (insightface's own
  mean shape, rotated by a known yaw) in the crop's normalised coordinates.
- w600k_r50 (ArcFace): input [N, 3, 112, 112], output [N, 512]: a random linear map of the
  crop's mean colour, so crops of different colours give different embeddings.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.faces.face import iou
from models.faces.insightface_backend import (
    BUFFALO_L_FILES,
    InsightFaceBackend,
    missing_buffalo_l_files,
)
from models.faces.select import load_face_backend

# Box distances (left, top, right, bottom) and kps offsets in units of the stride (32 px).
BOX_DIST = (1.0, 1.5, 1.0, 2.0)
KPS_OFFSETS = ((-0.4, -0.5), (0.4, -0.5), (0.0, 0.1), (-0.3, 0.8), (0.3, 0.8))
YAW_DEG = 30.0


def _const(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def _scrfd_model() -> onnx.ModelProto:
    nodes, inits, outputs = [], [], []
    heads = {"score": [], "bbox": [], "kps": []}
    for stride in (8, 16, 32):
        pooled = f"pool{stride}"
        nodes.append(helper.make_node("AveragePool", ["input.1"], [pooled], kernel_shape=[stride, stride],
                                      strides=[stride, stride]))
        for head, per_anchor in (("score", 1), ("bbox", 4), ("kps", 10)):
            channels = 2 * per_anchor
            weight = np.zeros((channels, 3, 1, 1), np.float32)
            if head == "score":
                # stride 32: sigmoid(40 * mean - 38) ~ 0.88 for a white cell (mean ~ 0.996),
                # < 0.01 for one less than 90 % white; strides 8 and 16 never fire.
                weight[:, :, 0, 0] = 40.0 / 3 if stride == 32 else 0.0
                bias = np.full(channels, -38.0 if stride == 32 else -20.0)
            elif head == "bbox":
                bias = np.tile(BOX_DIST, 2)
            else:
                bias = np.tile(np.array(KPS_OFFSETS).ravel(), 2)
            w_name, b_name, conv = f"{head}{stride}_w", f"{head}{stride}_b", f"{head}{stride}_conv"
            inits += [_const(w_name, weight), _const(b_name, bias)]
            nodes.append(helper.make_node("Conv", [pooled, w_name, b_name], [conv]))
            last = conv
            if head == "score":
                nodes.append(helper.make_node("Sigmoid", [conv], [conv + "_sig"]))
                last = conv + "_sig"
            nodes.append(helper.make_node("Transpose", [last], [last + "_t"], perm=[0, 2, 3, 1]))
            shape_name = f"{head}{stride}_shape"
            inits.append(numpy_helper.from_array(np.array([-1, per_anchor], np.int64), shape_name))
            out = f"{head}_{stride}"
            nodes.append(helper.make_node("Reshape", [last + "_t", shape_name], [out]))
            heads[head].append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, per_anchor]))
    outputs = heads["score"] + heads["bbox"] + heads["kps"]
    graph = helper.make_graph(
        nodes, "scrfd_synthetic",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "?", "?"])],
        outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _rotated_mean_shape() -> np.ndarray:
    """insightface's 68-point mean shape turned by YAW_DEG (nose towards +x), 1103x3 padded."""
    from insightface.data import get_object

    mean = np.asarray(get_object("meanshape_68.pkl"), dtype=np.float64)
    y = math.radians(YAW_DEG)
    rot = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    pts = (mean - mean.mean(0)) @ rot.T * 0.8
    out = np.zeros((1103, 3), np.float32)
    out[-68:] = pts
    return out


def _landmark_model() -> onnx.ModelProto:
    nodes = [
        helper.make_node("GlobalAveragePool", ["data"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "lmk_w", "lmk_b"], ["fc1"]),
    ]
    inits = [_const("lmk_w", np.zeros((3, 3309))), _const("lmk_b", _rotated_mean_shape().ravel())]
    graph = helper.make_graph(
        nodes, "landmark_synthetic",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 192, 192])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 3309])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _arcface_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("GlobalAveragePool", ["input.1"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["683"]),
    ]
    inits = [_const("fc_w", rng.normal(size=(3, 512))), _const("fc_b", rng.normal(size=512) * 0.01)]
    graph = helper.make_graph(
        nodes, "arcface_synthetic",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", 512])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    folder = root / "insightface" / "models" / "buffalo_l"
    folder.mkdir(parents=True)
    for name, model in zip(BUFFALO_L_FILES, (_scrfd_model(), _landmark_model(), _arcface_model())):
        onnx.checker.check_model(model)
        onnx.save(model, str(folder / name))
    return root


@pytest.fixture(scope="module")
def backend(models_dir) -> InsightFaceBackend:
    return InsightFaceBackend(models_dir)


def _image_with_white_cell(cell_x: int, cell_y: int, colour=(255, 255, 255)) -> np.ndarray:
    """640x640 RGB, black, with one 32x32 stride-32 cell filled (white by default)."""
    img = np.zeros((640, 640, 3), np.uint8)
    img[cell_y * 32:(cell_y + 1) * 32, cell_x * 32:(cell_x + 1) * 32] = colour
    return img


def _expected_box(cell_x: int, cell_y: int) -> np.ndarray:
    cx, cy = cell_x * 32.0, cell_y * 32.0  # SCRFD anchor centres sit on the cell corner
    left, top, right, bottom = (d * 32.0 for d in BOX_DIST)
    return np.array([cx - left, cy - top, cx + right, cy + bottom], np.float32)


def test_routes_each_file_to_its_insightface_model(backend):
    assert backend.name == "insightface-buffalo_l"
    assert type(backend.detector).__name__ == "SCRFD"
    assert backend.detector.use_kps and backend.detector._num_anchors == 2
    assert backend.detector.input_sizes == [(640, 640)]
    assert backend.landmarker.taskname == "landmark_3d_68"
    assert backend.recognizer.taskname == "recognition"
    assert backend.providers[-1] == "CPUExecutionProvider"


def test_detect_finds_the_face_the_model_is_built_to_produce(backend):
    faces = backend.detect(_image_with_white_cell(10, 8))
    assert len(faces) == 1
    face = faces[0]
    np.testing.assert_allclose(face.bbox, _expected_box(10, 8), atol=0.5)
    assert 0.8 < face.score <= 1.0
    expected_kps = np.array([[320 + dx * 32, 256 + dy * 32] for dx, dy in KPS_OFFSETS])
    np.testing.assert_allclose(face.kps, expected_kps, atol=0.5)
    assert face.landmarks.shape == (68, 2)
    assert face.embedding.shape == (512,)
    assert abs(float(np.linalg.norm(face.embedding)) - 1.0) < 1e-5


def test_empty_image_has_no_face(backend):
    assert backend.detect(np.zeros((480, 640, 3), np.uint8)) == []


def test_detection_is_rescaled_to_the_original_image(backend):
    # A 1280x1280 image is resized by 0.5 for the 640x640 detector input.
    big = np.kron(_image_with_white_cell(4, 6), np.ones((2, 2, 1), np.uint8))
    faces = backend.detect(big, with_embedding=False)
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].bbox, _expected_box(4, 6) * 2, atol=1.0)
    assert faces[0].embedding is None


def test_landmarks_and_pose_come_from_1k3d68(backend):
    face = backend.detect(_image_with_white_cell(10, 8), with_embedding=False)[0]
    # The 1k3d68 crop is centred on the box and 1.5x its larger side; the model returns
    # the rotated mean shape in normalised crop coordinates.
    box = face.bbox
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    side = 1.5 * max(box[2] - box[0], box[3] - box[1])
    expected = centre + _rotated_mean_shape()[-68:, :2] * side / 2
    np.testing.assert_allclose(face.landmarks, expected, atol=1.0)
    pitch, yaw, roll = face.pose
    assert yaw == pytest.approx(YAW_DEG, abs=1.0)  # nose turned towards +x -> yaw > 0
    assert abs(pitch) < 1.0 and abs(roll) < 1.0


def test_landmarks_path_follows_a_box_without_the_detector(backend):
    image = _image_with_white_cell(10, 8)
    detected = backend.detect(image, with_embedding=False)[0]
    followed = backend.landmarks(image, [detected.bbox], scores=[detected.score])
    assert len(followed) == 1
    np.testing.assert_allclose(followed[0].landmarks, detected.landmarks, atol=0.5)
    assert followed[0].pose == pytest.approx(detected.pose, abs=0.1)
    assert followed[0].score == pytest.approx(detected.score)
    assert followed[0].embedding is None
    assert iou(followed[0].bbox, detected.bbox) > 0.3


def test_embeddings_are_unit_cosine_scale(backend):
    white = backend.detect(_image_with_white_cell(10, 8))[0]
    white_elsewhere = backend.detect(_image_with_white_cell(5, 5))[0]
    assert backend.similarity(white.embedding, white_elsewhere.embedding) == pytest.approx(1.0, abs=1e-3)
    tinted = _image_with_white_cell(10, 8)
    tinted[:, :320] = (0, 0, 200)  # the aligned crop now sees blue on one side
    other = backend.detect(tinted)[0]
    assert backend.similarity(white.embedding, other.embedding) < 0.99
    assert -1.0 <= backend.similarity(white.embedding, -white.embedding) <= -0.999


def test_embed_fills_faces_from_their_kps(backend):
    image = _image_with_white_cell(10, 8)
    face = backend.detect(image, with_embedding=False)[0]
    backend.embed(image, [face])
    assert face.embedding.shape == (512,)
    assert backend.similarity(face.embedding, backend.detect(image)[0].embedding) == pytest.approx(1.0, abs=1e-5)


def test_missing_files_are_named_and_nothing_is_downloaded(tmp_path):
    assert missing_buffalo_l_files(tmp_path) == [
        "insightface/models/buffalo_l/det_10g.onnx",
        "insightface/models/buffalo_l/1k3d68.onnx",
        "insightface/models/buffalo_l/w600k_r50.onnx",
    ]
    with pytest.raises(FileNotFoundError, match="det_10g.onnx"):
        InsightFaceBackend(tmp_path)
    assert not (tmp_path / "insightface").exists()


def test_auto_selection_picks_insightface_when_files_are_present(models_dir):
    assert missing_buffalo_l_files(models_dir) == []
    assert load_face_backend(models_dir, "auto").name == "insightface-buffalo_l"
