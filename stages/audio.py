"""Audio decoding for analysis: any common input as float32 mono at a chosen rate.

Channels are mixed down as their mean, as librosa (MuseTalk's reference code) and the
training data of the models do. swresample's own float downmix is (L+R)*0.707 for stereo:
3 dB louder than the mean, which would shift whisper's log-mel and the classical levels.
"""
from __future__ import annotations

import os

import av
import numpy as np

from stages.decode import open_media
from stream.errors import MediaError


def load_audio(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """Decode the first audio stream of `path` (wav, mp3, aac/m4a, mp4...) to mono float32.

    Samples are in [-1, 1] at `sample_rate` Hz, the mean of the input's channels. Raises MediaError naming the file when it
    is missing, not media, or has no audio stream.
    """
    path = str(path)
    with open_media(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "has no audio stream; send a file with an audio track")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)  # planar, the input's channels kept
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().mean(axis=0))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().mean(axis=0))
        except av.error.FFmpegError as exc:
            raise MediaError(path, f"audio is corrupt or truncated ({exc})") from exc
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)
