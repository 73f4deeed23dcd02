"""Whether a face can be lip-synced, and how well.

Rules (defaults configurable through SyncRules), checked in this order; the first that
applies is the skip reason:

1. `face_too_small`: bbox width < min_width_px (64). A tiny face's landmarks, pose and
   confidence are unreliable, and a mouth a few pixels wide cannot carry the motion.
2. `low_detection_quality`: confidence < min_confidence (0.5). The box and landmarks may
   be wrong, so the pose below cannot be trusted either.
3. `profile_view`: |yaw| > max_yaw_deg (45). One side of the mouth is hidden.

sync_quality (0-1, null when not syncable) = pose * size * confidence, where
  pose = cos(yaw) * cos(pitch)            (1 for a frontal face),
  size = min(1, width_px / 256) ** 0.5     (saturates at 256 px wide),
  confidence = the detector's score.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from models.faces.face import Face


@dataclass(frozen=True)
class SyncRules:
    min_width_px: float = 64.0
    min_confidence: float = 0.5
    max_yaw_deg: float = 45.0


@dataclass(frozen=True)
class Syncability:
    syncable: bool
    skip_reason: str | None
    sync_quality: float | None


def assess(face: Face, rules: SyncRules = SyncRules()) -> Syncability:
    pitch, yaw, _ = face.pose if face.pose is not None else (0.0, 0.0, 0.0)
    if face.width < rules.min_width_px:
        return Syncability(False, "face_too_small", None)
    if face.score < rules.min_confidence:
        return Syncability(False, "low_detection_quality", None)
    if abs(yaw) > rules.max_yaw_deg:
        return Syncability(False, "profile_view", None)
    pose = max(0.0, math.cos(math.radians(yaw)) * math.cos(math.radians(pitch)))
    size = min(1.0, face.width / 256.0) ** 0.5
    quality = pose * size * max(0.0, min(1.0, face.score))
    return Syncability(True, None, round(quality, 3))
