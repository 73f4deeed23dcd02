"""Backend selection without InsightFace files (the synthetic-files case is in test_faces_insightface)."""
from __future__ import annotations

import pytest

from models.faces.select import load_face_backend, missing_face_files


def test_missing_files_are_listed_relative_to_models_dir(tmp_path):
    missing = missing_face_files(tmp_path)
    assert missing == ["insightface/models/buffalo_l/det_10g.onnx", "insightface/models/buffalo_l/1k3d68.onnx",
                       "insightface/models/buffalo_l/w600k_r50.onnx"]
    folder = tmp_path / "insightface" / "models" / "buffalo_l"
    folder.mkdir(parents=True)
    (folder / "det_10g.onnx").write_bytes(b"x")
    assert missing_face_files(tmp_path) == missing[1:]


def test_auto_falls_back_to_the_default_backend(tmp_path):
    assert load_face_backend(tmp_path, "auto").name == "default-retinaface-dlib"
    assert load_face_backend(tmp_path, "default").name == "default-retinaface-dlib"


def test_forced_insightface_without_files_names_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="w600k_r50.onnx"):
        load_face_backend(tmp_path, "insightface")


def test_unknown_choice_is_refused(tmp_path):
    with pytest.raises(ValueError, match="auto, insightface, default"):
        load_face_backend(tmp_path, "mediapipe")
