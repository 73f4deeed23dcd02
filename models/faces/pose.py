"""Head pose (pitch, yaw, roll) in degrees from 68 iBUG landmarks, by a PnP solve.

Conventions (the same as InsightFace's `1k3d68` pose, so both backends agree):
- yaw > 0 when the nose turns towards image +x (the subject's left, for a frontal face),
- pitch > 0 when the face tilts up (the nose moves towards image -y),
- roll > 0 when the face rotates clockwise on screen (the image-right eye goes lower).

How: a generic 3D face (average adult proportions, millimetres, written for this module)
is fitted to the rigid landmarks (nose and eye corners) with `cv2.solvePnP`. The mouth is
left out: speech and smiles move it (on s29.mp4 a smile alone moved pitch by 25 degrees),
and so is the jaw contour, a silhouette that slides with yaw. The camera is a pinhole whose
focal length is the larger image side (about 53 degrees of view) with its principal point
on the face, so the pose is the face's turn relative to the line of sight, as InsightFace's
weak-perspective fit gives it, and a frontal face near the frame edge reads as frontal. The
rotation is then read with InsightFace's Euler formulas in its frame (x right, y down, z
towards the camera).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

# iBUG index -> (x right, y down, z towards the camera) in mm, nose tip at the origin.
_MODEL_POINTS_MM: dict[int, tuple[float, float, float]] = {
    27: (0.0, -38.0, -22.0),   # nasion (between the eyes)
    28: (0.0, -26.0, -15.0),   # nose bridge
    29: (0.0, -13.0, -7.0),    # nose bridge, lower
    30: (0.0, 0.0, 0.0),       # nose tip
    31: (-13.0, 8.0, -12.0),   # nostril wing, image-left
    33: (0.0, 10.0, -10.0),    # subnasale
    35: (13.0, 8.0, -12.0),    # nostril wing, image-right
    36: (-45.0, -35.0, -28.0),  # outer eye corner, image-left
    39: (-15.0, -33.0, -22.0),  # inner eye corner, image-left
    42: (15.0, -33.0, -22.0),   # inner eye corner, image-right
    45: (45.0, -35.0, -28.0),   # outer eye corner, image-right
}
_INDICES = np.array(list(_MODEL_POINTS_MM), dtype=np.int64)
# OpenCV's object frame is right-handed with z away from the camera: flip z.
_FLIP_Z = np.diag([1.0, 1.0, -1.0])
_OBJECT_POINTS = (np.array(list(_MODEL_POINTS_MM.values()), dtype=np.float64) @ _FLIP_Z)
_OUTER_EYE_DISTANCE_MM = 90.0


def camera_matrix(width: int, height: int) -> np.ndarray:
    """Pinhole intrinsics for an image of width x height pixels (focal = larger side)."""
    f = float(max(width, height))
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def euler_from_rotation(rotation_cv: np.ndarray) -> tuple[float, float, float]:
    """(pitch, yaw, roll) in degrees from an OpenCV object-to-camera rotation matrix."""
    r = _FLIP_Z @ rotation_cv @ _FLIP_Z  # the same rotation in InsightFace's frame
    sy = math.hypot(r[0, 0], r[1, 0])
    if sy > 1e-6:
        pitch = math.atan2(r[2, 1], r[2, 2])
        roll = math.atan2(r[1, 0], r[0, 0])
    else:
        pitch = math.atan2(-r[1, 2], r[1, 1])
        roll = 0.0
    yaw = math.atan2(-r[2, 0], sy)
    return (math.degrees(pitch), math.degrees(yaw), math.degrees(roll))


def head_pose_from_landmarks(landmarks: np.ndarray, width: int, height: int) -> tuple[float, float, float]:
    """(pitch, yaw, roll) in degrees for 68 iBUG landmarks (pixels) in a width x height image."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if pts.shape[0] != 68:
        raise ValueError(f"expected 68 landmarks, got {pts.shape[0]}")
    image_points = pts[_INDICES]
    cam = camera_matrix(width, height)
    cam[:2, 2] = image_points.mean(axis=0)
    # Start from a frontal face at the depth its eye distance implies; this keeps the
    # iterative solve away from the mirrored solution that sparse points allow.
    eye_px = max(float(np.linalg.norm(pts[45] - pts[36])), 1.0)
    depth = cam[0, 0] * _OUTER_EYE_DISTANCE_MM / eye_px
    centre = (pts[30] - cam[:2, 2]) * depth / cam[0, 0]
    rvec = np.zeros((3, 1))
    tvec = np.array([[centre[0]], [centre[1]], [depth]])
    ok, rvec, tvec = cv2.solvePnP(
        _OBJECT_POINTS, image_points, cam, None, rvec, tvec,
        useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE,
    )
    if not ok:
        raise RuntimeError("solvePnP failed on the given landmarks")
    rotation, _ = cv2.Rodrigues(rvec)
    return euler_from_rotation(rotation)


def project_model(pitch: float, yaw: float, roll: float, width: int, height: int,
                  distance_mm: float = 600.0) -> dict[int, np.ndarray]:
    """Image positions (pixels) of the generic model's points for a given pose.

    The inverse of `head_pose_from_landmarks` for the rigid points; used to check the
    conventions (a known pose in, the same pose out).
    """
    p, y, r = (math.radians(v) for v in (pitch, yaw, roll))
    # Rotations in InsightFace's frame, composed as its Euler read-out expects (R = Rz Ry Rx).
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    rotation_cv = _FLIP_Z @ (rz @ ry @ rx) @ _FLIP_Z
    rvec, _ = cv2.Rodrigues(rotation_cv)
    # The points' centroid on the optical axis, as `head_pose_from_landmarks` assumes.
    tvec = np.array([0.0, 0.0, distance_mm]) - rotation_cv @ _OBJECT_POINTS.mean(axis=0)
    pts, _ = cv2.projectPoints(_OBJECT_POINTS, rvec, tvec, camera_matrix(width, height), None)
    return {int(i): pt for i, pt in zip(_INDICES, pts.reshape(-1, 2))}
