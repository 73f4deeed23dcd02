"""The InsightFace buffalo_l backend: SCRFD det_10g, 1k3d68 landmarks + pose, ArcFace w600k_r50.

Weights come only from MODELS_DIR/insightface/models/buffalo_l/ (the layout the
`insightface` package expects under its root); nothing is downloaded: missing files raise
`FileNotFoundError` naming them. The models are loaded through the real `insightface`
code (`FaceAnalysis` with the detection, landmark_3d_68 and recognition modules), on
onnxruntime's CUDA provider when the device is cuda and this onnxruntime has it, else the
CPU. The detector runs once per image at det_size 640x640 (not insightface 2.1's "auto"
mode, which runs it twice).

Per face: bbox and score from SCRFD (`detect`), 5 kps from SCRFD, 68 (x, y) landmarks and
(pitch, yaw, roll) from 1k3d68 with InsightFace's conventions (see `models.faces.pose`),
the 512-d ArcFace embedding L2-normalised; `similarity` is their cosine.
`landmarks(image, boxes)` runs 1k3d68 alone; its box is derived from the 68 landmarks
(`models.faces.default.box_from_landmarks`, calibrated to a WIDER-FACE detector's box) and
its kps from the landmarks, since no detector ran.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from models.faces.default import box_from_landmarks, kps_from_landmarks
from models.faces.face import Face
from models.runtime import onnx_providers, resolve_device

BUFFALO_L_FILES = ("det_10g.onnx", "1k3d68.onnx", "w600k_r50.onnx")
DET_SIZE = (640, 640)
_MODULES = ["detection", "landmark_3d_68", "recognition"]


def buffalo_l_dir(models_dir: Path) -> Path:
    """Where buffalo_l's ONNX files live under MODELS_DIR."""
    return Path(models_dir) / "insightface" / "models" / "buffalo_l"


def missing_buffalo_l_files(models_dir: Path) -> list[str]:
    """The buffalo_l files this backend needs that are absent, relative to MODELS_DIR."""
    folder = buffalo_l_dir(models_dir)
    return [str((folder / f).relative_to(models_dir)) for f in BUFFALO_L_FILES if not (folder / f).is_file()]


class InsightFaceBackend:
    """buffalo_l through `insightface.app.FaceAnalysis`; RGB uint8 images in, `Face`s out."""

    name = "insightface-buffalo_l"

    def __init__(self, models_dir: Path, providers: Sequence[str] | None = None,
                 det_thresh: float = 0.5, device: str = "auto") -> None:
        models_dir = Path(models_dir)
        missing = missing_buffalo_l_files(models_dir)
        if missing:
            raise FileNotFoundError(
                f"InsightFace buffalo_l is incomplete in MODELS_DIR={models_dir}: missing "
                f"{', '.join(missing)} (run scripts/download_models.py, or use the default backend)")
        from insightface.app import FaceAnalysis

        self.providers = list(providers) if providers is not None else onnx_providers(resolve_device(device))
        # The folder itself as `name`: FaceAnalysis then loads it as is and never reaches
        # its download path (which it takes for a bare name whose folder is missing).
        self.app = FaceAnalysis(name=str(buffalo_l_dir(models_dir)), root=str(models_dir / "insightface"),
                                allowed_modules=_MODULES, providers=self.providers)
        missing_tasks = [m for m in _MODULES if m not in self.app.models]
        if missing_tasks:
            raise RuntimeError(f"buffalo_l in {buffalo_l_dir(models_dir)} did not provide {missing_tasks}: "
                               "a file there is not the expected model")
        ctx_id = 0 if self.providers[0] == "CUDAExecutionProvider" else -1
        self.app.prepare(ctx_id=ctx_id, det_thresh=det_thresh, det_size=DET_SIZE)
        self.detector = self.app.models["detection"]
        self.landmarker = self.app.models["landmark_3d_68"]
        self.recognizer = self.app.models["recognition"]

    def detect(self, image: np.ndarray, with_embedding: bool = True) -> list[Face]:
        """All faces in an RGB uint8 image: SCRFD box/score/kps, 1k3d68 landmarks and pose."""
        bgr = np.ascontiguousarray(image[..., ::-1])
        dets, kpss = self.detector.detect(bgr, max_num=0, metric="default")
        faces = []
        for i in range(dets.shape[0]):
            found = self._analyse(bgr, dets[i, :4])
            kps = kpss[i] if kpss is not None else kps_from_landmarks(found.landmark_3d_68[:, :2])
            faces.append(self._face(found, dets[i, :4], float(dets[i, 4]), kps))
        if with_embedding:
            self._embed_bgr(bgr, faces)
        return faces

    def landmarks(self, image: np.ndarray, boxes: Sequence[np.ndarray],
                  scores: Sequence[float] | None = None) -> list[Face]:
        """Follow known faces: 1k3d68 on each [x1, y1, x2, y2] box; no detector, no embedding."""
        bgr = np.ascontiguousarray(image[..., ::-1])
        out = []
        for i, box in enumerate(boxes):
            found = self._analyse(bgr, np.asarray(box, dtype=np.float32))
            lmk = found.landmark_3d_68[:, :2]
            out.append(self._face(found, box_from_landmarks(lmk), 1.0 if scores is None else float(scores[i]),
                                  kps_from_landmarks(lmk)))
        return out

    def embed(self, image: np.ndarray, faces: Sequence[Face]) -> None:
        """Fill each face's L2-normalised 512-d ArcFace embedding (aligned on its 5 kps)."""
        self._embed_bgr(np.ascontiguousarray(image[..., ::-1]), faces)

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        """Cosine similarity of two ArcFace embeddings (0.5 = same person), clamped to
        [-1, 1]: float32 rounding can land a hair outside it (-1.0000001 for e and -e)."""
        a, b = np.asarray(a, dtype=np.float32).ravel(), np.asarray(b, dtype=np.float32).ravel()
        cosine = float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))
        return min(1.0, max(-1.0, cosine))

    def _analyse(self, bgr: np.ndarray, box: np.ndarray):
        """insightface's Face for a box with 1k3d68's landmark_3d_68 and pose filled."""
        from insightface.app.common import Face as InsightFace

        found = InsightFace(bbox=np.asarray(box, dtype=np.float32))
        self.landmarker.get(bgr, found)
        return found

    def _embed_bgr(self, bgr: np.ndarray, faces: Sequence[Face]) -> None:
        from insightface.app.common import Face as InsightFace

        for face in faces:
            found = InsightFace(bbox=face.bbox, kps=face.kps)
            self.recognizer.get(bgr, found)
            face.embedding = np.asarray(found.normed_embedding, dtype=np.float32)

    @staticmethod
    def _face(found, box: np.ndarray, score: float, kps: np.ndarray) -> Face:
        pitch, yaw, roll = (float(v) for v in found.pose)
        return Face(bbox=box, score=score, kps=kps, landmarks=found.landmark_3d_68[:, :2],
                    pose=(pitch, yaw, roll))
