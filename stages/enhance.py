"""EnhanceStage: CodeFormer restores the synced faces after compositing.

Faces are aligned to the FFHQ 512 template by their 5 keypoints, restored in batches
across frames with the request's fidelity_weight (0 = quality, 1 = fidelity), and pasted
back with the inverse affine and the official soft mask (narrowed by ParseNet's face
parsing when its weights are present), all as the official inference does it
(`models/codeformer/`). Only faces being lip-synced are touched.
"""
from __future__ import annotations

from stream.frame import Frame
from stream.stage import BatchStage


class EnhanceStage(BatchStage):
    name = "enhance"

    def __init__(self, restorer, fidelity_weight: float, batch_size: int = 4) -> None:
        super().__init__()
        self.restorer = restorer
        self.fidelity_weight = fidelity_weight
        self.batch_size = batch_size
        self.faces_restored = 0

    def process_batch(self, frames: list[Frame]) -> list[Frame]:
        chosen = [f for f in frames if f.notes.get("render")]
        if chosen:
            restored = self.restorer.restore_frames(
                [f.image for f in chosen], [[item.face.kps for item in f.notes["render"]] for f in chosen],
                self.fidelity_weight)
            for frame, image in zip(chosen, restored):
                frame.image = image
            self.faces_restored += sum(len(f.notes["render"]) for f in chosen)
        return frames
