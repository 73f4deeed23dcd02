"""Face analysis backends: detection, 5 keypoints, 68 landmarks, head pose, identity."""
from models.faces.base import FaceBackend
from models.faces.select import BACKEND_CHOICES, load_face_backend, missing_face_files

__all__ = ["BACKEND_CHOICES", "FaceBackend", "load_face_backend", "missing_face_files"]
