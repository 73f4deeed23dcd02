"""AnimateStage: LivePortrait re-renders each synced face from the original frame, taking
only the lip expression from the lip-sync engine's output (MuseTalk's soft 256 px crop).

The identity, head motion and sharpness stay the original's. It replaces the engine's
patches with LivePortrait's (keeping the engine's where LivePortrait returns none, e.g.
a face cut by the frame edge). Frames resident on the device stay there: LivePortrait
crops, renders and returns its patches as tensors on that device.

Each request carries the face's box and 68 landmarks: the animator uses them only with
lip retargeting on (it then measures the driving face's lips with its landmark function).
"""
from __future__ import annotations

from stages.composite import blend_patch, copy_image
from stages.lipsync import track_key
from stream.frame import Frame
from stream.stage import BatchStage


class AnimateStage(BatchStage):
    name = "animate"

    def __init__(self, animator, batch_size: int = 8) -> None:
        super().__init__()
        self.animator = animator
        self.batch_size = batch_size

    def process_batch(self, frames: list[Frame]) -> list[Frame]:
        from models.liveportrait import AnimateRequest

        requests, slots = [], []
        for frame in frames:
            patches = frame.notes.get("patches") or []
            items = frame.notes.get("render") or []
            if not patches:
                continue
            driving = copy_image(frame.image)
            for patch in patches:
                blend_patch(driving, patch)
            for slot, item in enumerate(items[:len(patches)]):
                requests.append(AnimateRequest(frame.image, driving, item.face.kps, track_key(item.target.key, frame),
                                               frame.index, item.strength, face_box=item.face.bbox,
                                               source_landmarks=item.face.landmarks))
                slots.append((frame, slot))
        if requests:
            for (frame, slot), patch in zip(slots, self.animator.render(requests)):
                if patch is not None:
                    frame.notes["patches"][slot] = patch
        return frames
