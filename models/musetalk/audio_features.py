"""MuseTalk 1.5 audio features: whisper-tiny encoder states, one [50, 384] window per frame.

The audio (16 kHz mono) is cut into 30 s chunks; each chunk's log-mel goes through the
whisper encoder, and all hidden states (the input embedding plus each layer's output,
[1500, 384] each for whisper-tiny) are stacked to [1500, 5, 384]: 50 feature frames per
second of audio. The chunks are joined and trimmed to floor(seconds * 50) frames, then
zero-padded by ceil(50 / fps) * 2 frames on the left and three times that on the right.
A video frame at time t takes the 10 feature frames starting at floor(t * 50) in the padded
array, flattened to [50, 384] (10 frames x 5 layers). Selecting by time rather than frame
number keeps frames with no face, or frames of another face, from shifting the audio.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import CheckpointError, load_strict, read_state_dict

SAMPLE_RATE = 16000
FEATURE_RATE = 50  # whisper encoder frames per second (20 ms each)
CHUNK_SECONDS = 30
WINDOW_FRAMES = 10  # feature frames per video frame: 2 * (left 2 + right 2 + 1)
PAD_LEFT_UNITS = 2
PAD_RIGHT_UNITS = 2
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class AudioFeatures:
    """The job's whisper features, ready to slice per frame.

    padded is [pad_left + T + pad_right, layers, 384] on the engine's device; T = floor(seconds * 50).
    """

    padded: torch.Tensor
    duration_s: float
    fps: float

    @property
    def num_layers(self) -> int:
        return int(self.padded.shape[1])

    def windows(self, times_ms: list[float] | np.ndarray) -> torch.Tensor:
        """The audio tokens for frames at `times_ms` (ms): [B, 10 * layers, 384].

        Window starts beyond the padded features (video longer than the audio) read zeros,
        exactly as padding does at the ends of the audio.
        """
        starts = [int(math.floor(float(t) / 1000.0 * FEATURE_RATE + 1e-6)) for t in times_ms]
        total = self.padded.shape[0]
        out = self.padded.new_zeros((len(starts), WINDOW_FRAMES) + tuple(self.padded.shape[1:]))
        for row, start in enumerate(starts):
            lo, hi = max(start, 0), min(start + WINDOW_FRAMES, total)
            if hi > lo:
                out[row, lo - start : hi - start] = self.padded[lo:hi]
        return out.reshape(len(starts), -1, self.padded.shape[-1])


def whisper_weights_file(whisper_dir: str | os.PathLike) -> Path | None:
    """The weights file present in `whisper_dir` (safetensors preferred), or None."""
    for name in WEIGHT_NAMES:
        candidate = Path(whisper_dir) / name
        if candidate.is_file():
            return candidate
    return None


def _encoder_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep the encoder's tensors of a WhisperModel / WhisperForConditionalGeneration state_dict."""
    for prefix in ("model.encoder.", "encoder."):
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if picked:
            return picked
    return {}


class WhisperAudioEncoder:
    """whisper-tiny's feature extractor and encoder, producing MuseTalk's stacked states."""

    def __init__(self, feature_extractor, encoder: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
        self.feature_extractor = feature_extractor
        self.encoder = encoder.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.device = device
        self.dtype = dtype

    @classmethod
    def load(cls, whisper_dir: str | os.PathLike, device: torch.device, dtype: torch.dtype) -> "WhisperAudioEncoder":
        """Load `config.json`, `preprocessor_config.json` and the weights of a Hugging Face whisper folder.

        Only the encoder is built; its keys must all be present in the weights file.
        """
        from transformers import WhisperConfig, WhisperFeatureExtractor
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        whisper_dir = Path(whisper_dir)
        for name in ("config.json", "preprocessor_config.json"):
            if not (whisper_dir / name).is_file():
                raise CheckpointError(f"{whisper_dir / name}: file not found")
        weights = whisper_weights_file(whisper_dir)
        if weights is None:
            raise CheckpointError(f"{whisper_dir}: no {' or '.join(WEIGHT_NAMES)}")
        try:
            config = WhisperConfig.from_pretrained(str(whisper_dir))
            extractor = WhisperFeatureExtractor.from_pretrained(str(whisper_dir))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{whisper_dir}: unreadable whisper config ({exc})") from exc
        encoder = WhisperEncoder(config)
        state = _encoder_state(read_state_dict(weights))
        if not state:
            raise CheckpointError(f"{weights}: no whisper encoder tensors (keys starting with model.encoder. or encoder.)")
        load_strict(encoder, state, weights)
        return cls(extractor, encoder, device, dtype)

    @torch.no_grad()
    def stacked_states(self, audio: np.ndarray) -> torch.Tensor:
        """16 kHz mono float32 -> [floor(seconds * 50), layers, d_model] on the device."""
        chunk = CHUNK_SECONDS * SAMPLE_RATE
        frames = int(math.floor(len(audio) / SAMPLE_RATE * FEATURE_RATE))
        parts = []
        for start in range(0, max(len(audio), 1), chunk):
            segment = np.asarray(audio[start : start + chunk], dtype=np.float32)
            mel = self.feature_extractor(segment, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
            states = self.encoder(mel.to(device=self.device, dtype=self.dtype), output_hidden_states=True).hidden_states
            parts.append(torch.stack(states, dim=2)[0])
        return torch.cat(parts, dim=0)[:frames]

    def features(self, audio: np.ndarray, sample_rate: int, fps: float) -> AudioFeatures:
        """The job's padded features for video at `fps` (frames per second)."""
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"whisper needs {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; load it with load_audio(path, 16000)")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        states = self.stacked_states(audio)
        unit = math.ceil(FEATURE_RATE / fps)
        left = states.new_zeros((unit * PAD_LEFT_UNITS,) + tuple(states.shape[1:]))
        right = states.new_zeros((unit * 3 * PAD_RIGHT_UNITS,) + tuple(states.shape[1:]))
        return AudioFeatures(torch.cat([left, states, right], dim=0), len(audio) / SAMPLE_RATE, float(fps))

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.encoder.parameters())
