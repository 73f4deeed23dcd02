"""FaceRestorer: CodeFormer on whole frames, with the official pre- and post-processing.

As the official inference_codeformer.py with facexlib's FaceRestoreHelper (upscale 1,
use_parse=True): align each face to the FFHQ template (`align`), normalise to [-1, 1],
run the network with fidelity weight w (0 = best quality, 1 = most faithful), round the
output to uint8 (`tensor2img`), turn it grey when the frame is grey (`is_gray`), paste it
back with the official mask, narrowed by the ParseNet mask when its weights are present
(`paste`, `parsing`), and truncate the frame to uint8 at the end.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .align import align_face, align_matrix, is_gray, to_gray_like
from .arch import CodeFormer
from .loader import load_codeformer, load_parsenet
from .parsing import ParseNet, parse_mask
from .paste import paste_face


class FaceRestorer:
    """Batched CodeFormer restoration of whole frames given each face's 5 keypoints.

    Frames are HxWx3 uint8 RGB numpy arrays (CPU path) or torch tensors on the device
    (GPU path: alignment, network and paste-back all stay on the device).
    parser: ParseNet for the official parsing paste mask, or None for the square mask.
    """

    def __init__(self, net: CodeFormer, device: torch.device | str | None = None, fidelity_weight: float = 0.5,
                 batch_size: int = 8, adain: bool = True, parser: ParseNet | None = None) -> None:
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self.net = net.to(self.device).eval()
        self.parser = parser.to(self.device).eval() if parser is not None else None
        self.face_size = net.img_size
        self.fidelity_weight = fidelity_weight
        self.batch_size = max(1, batch_size)
        self.adain = adain

    @classmethod
    def load(cls, models_dir: str | Path, device: torch.device | str | None = None, fidelity_weight: float = 0.5,
             batch_size: int = 8, parser_arch: dict | None = None, **arch: object) -> FaceRestorer:
        """CodeFormer(**arch) and, when its file is present, ParseNet(**parser_arch) (official defaults)."""
        parser = load_parsenet(models_dir, **(parser_arch or {}))
        return cls(load_codeformer(models_dir, **arch), device, fidelity_weight, batch_size, parser=parser)

    @torch.inference_mode()
    def restore_tensor(self, crops: torch.Tensor, fidelity_weight: float | None = None) -> torch.Tensor:
        """Template-aligned faces (N, 3, S, S) float 0..255 -> restored, same layout, in batches,
        as uint8 levels (the official tensor2img: clamp to [-1, 1], scale, round)."""
        w = self.fidelity_weight if fidelity_weight is None else float(fidelity_weight)
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"fidelity_weight must be in [0, 1], got {w}")
        outs = []
        for start in range(0, crops.shape[0], self.batch_size):
            x = crops[start:start + self.batch_size].to(self.device) / 127.5 - 1.0
            y = self.net(x, w=w, adain=self.adain).float().clamp(-1, 1)
            outs.append(torch.round((y + 1) / 2 * 255.0))
        if not outs:
            return crops.new_zeros((0, 3, self.face_size, self.face_size))
        return torch.cat(outs)

    def restore_faces(self, crops: Sequence[np.ndarray], fidelity_weight: float | None = None) -> list[np.ndarray]:
        """Template-aligned SxSx3 uint8 RGB crops -> restored uint8 crops."""
        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()
        y = self.restore_tensor(x, fidelity_weight)
        return list(y.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())

    @torch.inference_mode()
    def parse_masks(self, faces: torch.Tensor) -> torch.Tensor | None:
        """(N, 1, S, S) parsing masks of restored faces, in batches; None without a parser."""
        if self.parser is None:
            return None
        return torch.cat([parse_mask(self.parser, faces[i:i + self.batch_size], self.face_size)
                          for i in range(0, faces.shape[0], self.batch_size)])

    @torch.inference_mode()
    def restore_frames(self, images: Sequence[np.ndarray | torch.Tensor], kps_per_image: Sequence[Sequence[np.ndarray]],
                       fidelity_weight: float | None = None) -> list[np.ndarray | torch.Tensor]:
        """Restore every listed face of every image (faces batched across images).

        Returns new frames of the input's type (numpy in, numpy out; tensor in, tensor out).
        """
        size = self.face_size
        frames = [torch.as_tensor(im).to(self.device).permute(2, 0, 1)[None].float() for im in images]
        gray = [is_gray(f) for f in frames]
        jobs: list[tuple[int, np.ndarray]] = []
        crops = []
        for i, kps_list in enumerate(kps_per_image):
            for kps in kps_list:
                affine = align_matrix(kps, size)
                crops.append(align_face(frames[i], affine, size))
                jobs.append((i, affine))
        if crops:
            inputs = torch.cat(crops)
            restored = self.restore_tensor(inputs, fidelity_weight)
            faces = [to_gray_like(face[None], crop[None]) if gray[i] else face[None]
                     for (i, _), face, crop in zip(jobs, restored, inputs)]
            masks = self.parse_masks(torch.cat(faces))
            for k, ((i, affine), face) in enumerate(zip(jobs, faces)):
                paste_face(frames[i], face, affine, None if masks is None else masks[k:k + 1], levels=not gray[i])
        outputs: list[np.ndarray | torch.Tensor] = []
        for image, frame in zip(images, frames):
            out = frame[0].clamp(0, 255).to(torch.uint8).permute(1, 2, 0)  # truncated, as numpy's astype
            outputs.append(out.cpu().numpy() if isinstance(image, np.ndarray) else out)
        return outputs

    def restore(self, image: np.ndarray | torch.Tensor, kps_list: Sequence[np.ndarray],
                fidelity_weight: float | None = None) -> np.ndarray | torch.Tensor:
        return self.restore_frames([image], [kps_list], fidelity_weight)[0]
