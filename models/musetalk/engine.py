"""MuseTalkEngine: MuseTalk 1.5 behind the LipSyncEngine interface.

Per batch of requests: crop each face from its landmarks, encode the crop with its lower
half blanked and the full crop with the VAE, run the UNet once at t=0 with each frame's
audio window, decode, and return the result pasted through a feathered "jaw" mask as a
MouthPatch. On CUDA the models run in fp16 as the official inference does; on the CPU in fp32.

Frames come as host numpy arrays (the official OpenCV steps in `crop.py`, numpy patches
out) or as torch tensors on the engine's device (the torch steps in `crop_device.py`,
tensor patches out): then crops, masks and pastes stay on the device, and only boxes
and landmark-drawn masks (host geometry, no frame pixels) come from the host.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.engine import MouthPatch, MouthRequest
from models.musetalk.audio_features import (
    AudioFeatures,
    WhisperAudioEncoder,
    whisper_weights_file,
)
from models.musetalk.crop import (
    CROP_SIZE,
    CropGeometry,
    clip_to_frame,
    crop_geometry,
    face_crop,
    finish_mask,
    landmark_jaw_mask,
    place_face,
    read_region,
)
from models.musetalk.crop_device import (
    face_crop_tensor,
    finish_mask_tensor,
    place_face_tensor,
)
from models.musetalk.face_parsing import FaceParser, load_bisenet
from models.musetalk.unet import MuseTalkUNet, load_unet
from models.musetalk.vae import LatentCodec, load_vae, vae_weights_file

log = logging.getLogger(__name__)

UNET_DIR = "musetalkV15"
VAE_DIR = "sd-vae"
WHISPER_DIR = "whisper"
PARSING_DIR = "face-parse-bisent"
PARSING_FILES = ("79999_iter.pth", "resnet18-5c106cde.pth")


class MissingWeightsError(FileNotFoundError):
    """MODELS_DIR lacks files an engine needs; the message lists them and how to get them."""


def missing_files(models_dir: str | os.PathLike) -> list[str]:
    """Required MuseTalk files absent from `models_dir`, as paths relative to it ("a or b" for alternatives).

    Face parsing is optional (a landmark mask replaces it), so it is not listed.
    """
    root = Path(models_dir)
    missing = [f"{UNET_DIR}/{name}" for name in ("unet.pth", "musetalk.json") if not (root / UNET_DIR / name).is_file()]
    if not (root / VAE_DIR / "config.json").is_file():
        missing.append(f"{VAE_DIR}/config.json")
    if vae_weights_file(root / VAE_DIR) is None:
        missing.append(f"{VAE_DIR}/diffusion_pytorch_model.safetensors or .bin")
    missing += [f"{WHISPER_DIR}/{n}" for n in ("config.json", "preprocessor_config.json") if not (root / WHISPER_DIR / n).is_file()]
    if whisper_weights_file(root / WHISPER_DIR) is None:
        missing.append(f"{WHISPER_DIR}/model.safetensors or pytorch_model.bin")
    return missing


def has_face_parsing(models_dir: str | os.PathLike) -> bool:
    return all((Path(models_dir) / PARSING_DIR / name).is_file() for name in PARSING_FILES)


@dataclass
class _Prepared:
    """What render keeps per request between the crop step and the paste step (arrays or tensors)."""

    geometry: CropGeometry
    crop: Any
    paste_region: Any


@dataclass(frozen=True)
class _Steps:
    """The image steps for one kind of frame: host arrays (OpenCV) or device tensors (torch)."""

    crop: Callable[[Any, CropGeometry], Any]
    place: Callable[[Any, CropGeometry, Any], Any]
    finish: Callable[[Any, CropGeometry], Any]


_HOST = _Steps(face_crop, place_face, finish_mask)
_DEVICE = _Steps(face_crop_tensor, place_face_tensor, finish_mask_tensor)


class MuseTalkEngine:
    """The neural lip-sync engine; build it with `MuseTalkEngine.load(models_dir)`."""

    name = "musetalk"

    def __init__(
        self,
        unet: MuseTalkUNet,
        codec: LatentCodec,
        audio_encoder: WhisperAudioEncoder,
        parser: FaceParser | None,
        device: torch.device,
        batch_size: int,
    ) -> None:
        self.unet = unet
        self.codec = codec
        self.audio_encoder = audio_encoder
        self.parser = parser
        self.device = device
        self.batch_size = batch_size

    @property
    def mask_source(self) -> str:
        """"face-parsing" when BiSeNet is loaded, else "landmarks" (the documented fallback)."""
        return "face-parsing" if self.parser is not None else "landmarks"

    @classmethod
    def load(
        cls, models_dir: str | os.PathLike, device: str | torch.device | None = None, batch_size: int | None = None
    ) -> "MuseTalkEngine":
        """Load every MuseTalk 1.5 model from `models_dir` (see missing_files for the layout).

        device defaults to CUDA when available (fp16) else CPU (fp32). Raises
        MissingWeightsError listing absent files, CheckpointError for a file that does not fit.
        """
        root = Path(models_dir)
        missing = missing_files(root)
        if missing:
            raise MissingWeightsError(
                f"MuseTalk weights missing in {root}: {', '.join(missing)}. "
                f"Run: python scripts/download_models.py --models-dir {root} --only musetalk sd-vae whisper face-parse-bisent"
            )
        device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        unet = MuseTalkUNet(load_unet(root / UNET_DIR / "musetalk.json", root / UNET_DIR / "unet.pth"), device, dtype)
        vae, scaling = load_vae(root / VAE_DIR)
        codec = LatentCodec(vae, scaling, device, dtype)
        audio_encoder = WhisperAudioEncoder.load(root / WHISPER_DIR, device, dtype)
        parser = None
        if has_face_parsing(root):
            parser = FaceParser(load_bisenet(*(root / PARSING_DIR / n for n in PARSING_FILES)), device)
        else:
            log.warning(
                "face parsing weights absent in %s/%s: blending MuseTalk with a landmark jaw mask instead",
                root,
                PARSING_DIR,
            )
        if batch_size is None:
            batch_size = 16 if device.type == "cuda" else 4
        log.info("MuseTalk 1.5 loaded on %s (%s), mask from %s", device, dtype, "face parsing" if parser else "landmarks")
        return cls(unet, codec, audio_encoder, parser, device, batch_size)

    def prepare_audio(self, audio: np.ndarray, sample_rate: int, fps: float) -> AudioFeatures:
        """Whisper features for the whole job, computed once (16 kHz mono float32 in [-1, 1])."""
        return self.audio_encoder.features(np.asarray(audio, dtype=np.float32), sample_rate, fps)

    def render(self, requests: Sequence[MouthRequest], audio_features: AudioFeatures) -> list[MouthPatch]:
        """One MouthPatch per request, in order; requests are processed as one batch.

        A batch is all host arrays or all device tensors; patches are of the same kind.
        """
        if not requests:
            return []
        on_device = [isinstance(r.image, torch.Tensor) for r in requests]
        if any(on_device) and not all(on_device):
            raise ValueError("a MuseTalk batch mixes numpy and torch frames; upload all or none")
        steps = _DEVICE if on_device[0] else _HOST
        prepared = [self._prepare(request, steps) for request in requests]
        crops = torch.stack([torch.as_tensor(p.crop) for p in prepared])
        generated = self._generate(crops, audio_features.windows([r.time_ms for r in requests]))
        if not on_device[0]:
            generated = generated.cpu().numpy()
        masks = self._masks(requests, prepared, on_device[0])
        patches = []
        for request, item, face, mask in zip(requests, prepared, generated, masks):
            pixels = steps.place(item.paste_region, item.geometry, face)
            alpha = steps.finish(mask, item.geometry) * float(np.clip(request.strength, 0.0, 1.0))
            x, y, pixels, alpha = clip_to_frame(item.geometry, pixels, alpha, request.image.shape)
            patches.append(MouthPatch(x=x, y=y, pixels=pixels, alpha=alpha))
        return patches

    def _prepare(self, request: MouthRequest, steps: _Steps) -> _Prepared:
        face = request.face
        if face.landmarks is None or len(face.landmarks) != 68:
            raise ValueError(f"frame {request.frame_index}: MuseTalk needs 68 iBUG landmarks on the face")
        geometry = crop_geometry(face.landmarks, request.image.shape, face.bbox)
        return _Prepared(geometry, steps.crop(request.image, geometry), read_region(request.image, geometry.paste_box))

    def _generate(self, crops: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """[B, 256, 256, 3] uint8 RGB crops (any device) + audio tokens -> generated faces, same layout, on the device."""
        images = crops.to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        masked = images.clone()
        masked[:, :, CROP_SIZE // 2 :, :] = -1.0  # lower half black, as the model was trained
        latents = self.codec.encode(torch.cat([masked, images], dim=0))
        count = len(crops)
        unet_in = torch.cat([latents[:count], latents[count:]], dim=1)
        return self.codec.decode(self.unet(unet_in, audio))

    def _masks(self, requests: Sequence[MouthRequest], prepared: list[_Prepared], on_device: bool) -> list[Any]:
        """Paste-box masks (uint8 0-255) from face parsing of the original pixels, or from the landmarks.

        The landmark mask is drawn on the host from host landmarks (no frame pixels) and,
        for device frames, uploaded: one paste-box-sized byte plane per face.
        """
        regions = [p.paste_region for p in prepared]
        if self.parser is not None:
            return self.parser.jaw_masks_tensor(regions) if on_device else self.parser.jaw_masks(regions)
        masks = [landmark_jaw_mask(r.face.landmarks, p.geometry) for r, p in zip(requests, prepared)]
        return [torch.from_numpy(m).to(self.device) for m in masks] if on_device else masks
