"""Reference headshots: load an image and take the embedding of its main face."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from models.faces.base import FaceBackend
from stream.errors import InputError, MediaError


@dataclass
class Character:
    """A character the caller wants recognised: id, display name, headshot file."""

    id: str
    name: str | None
    image_path: Path


def load_rgb_image(path: Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB, EXIF orientation applied."""
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise MediaError(str(path), "is not an image Pillow can read; send a JPEG or PNG headshot") from exc


def reference_embedding(backend: FaceBackend, character: Character) -> np.ndarray:
    """The embedding of the largest face in the character's headshot."""
    image = load_rgb_image(character.image_path)
    faces = backend.detect(image, with_embedding=True)
    faces = [f for f in faces if f.embedding is not None]
    if not faces:
        label = f"'{character.id}'" + (f" ({character.name})" if character.name else "")
        raise InputError(f"reference image for character {label} has no detectable face; "
                         "send a clear, well-lit headshot showing the face")
    return max(faces, key=lambda f: f.width * f.height).embedding
