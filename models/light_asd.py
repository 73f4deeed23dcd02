"""Light-ASD active speaker detection (Liao et al., CVPR 2023; MIT), re-implemented.

Inputs per face track, at 25 fps: grey 112x112 face crops (see models/asd_crop.py) and
the MFCCs of the original audio (models/mfcc.py, 100 frames/s, 4 per video frame).
Output: one score per video frame, the official "logit-like" value (> 0 means speaking).

The module layout and attribute names follow the official code so that its checkpoints
(`pretrain_AVA_CVPR.model`, `finetuning_TalkSet.model`: plain state_dicts with keys
`model.*`, `lossAV.*` and the training-only `lossV.*`) load unchanged.
Network: a visual encoder of (2+1)D conv blocks, an audio encoder of (1+1)D conv blocks,
their sum through a forward GRU then a backward GRU (128 each, GELU), and a 128->2
linear layer whose class-1 output is the score.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.asd_crop import ASD_FPS, CROP_SIZE
from models.checkpoint import load_strict, read_state_dict
from models.runtime import intra_op_threads

log = logging.getLogger(__name__)

MFCC_PER_FRAME = 4
N_MFCC = 13
# Normalisation of grey pixels used in training: (x / 255 - mean) / std.
PIXEL_MEAN = 0.4161
PIXEL_STD = 0.1688
# Window lengths in seconds whose scores are averaged. The official Columbia script writes
# durationSet = {1,1,1,2,2,2,3,3,4,5,6}: a Python set, so each of 1..6 s counts once.
DEFAULT_DURATIONS_S: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
# Score for frames that the audio does not reach (track longer than the soundtrack):
# without sound nobody speaks; sigmoid(-5) is about 0.007.
NO_AUDIO_SCORE = -5.0
# Largest number of video frames pushed through the encoders in one batch (6 s): bounds
# memory to a few hundred MB on the CPU path.
MAX_BATCH_FRAMES = 150
# Temporal reach of the visual encoder in frames: three blocks, each with a 5-tap temporal
# conv (BLOCK_REACH frames either side), so a frame's embedding depends on the frames up to 6
# either side and no further.
BLOCK_REACH = 2
VISUAL_REACH = 3 * BLOCK_REACH
# The audio encoder's, in video frames: 5-tap convs at 100, 50 and 25 Hz with two stride-2
# pools between them, so video frame k's embedding depends on the MFCCs of frames k-5..k+4.
AUDIO_REACH = 5
SCORE_THREADS = 1
"""torch intra-op threads while scoring a track on the CPU. One: on this 2-core machine the
audio encoder's thin convolutions take 17x longer with two OpenMP threads than with one (740
against 43 ms for 10 s of audio) and the visual encoder 1.3x, so the visual encoder's batches
run side by side instead (VISUAL_WORKERS), and so do tracks (`stages.speakers.TrackScorer`).
"""
VISUAL_WORKERS = 4
"""Visual-encoder batches (at most MAX_BATCH_FRAMES frames, a few hundred MB of activations
each) that run at once on the CPU, one thread each, fewer on fewer cores; shared by all the
tracks being scored, so that one long track uses every core and several tracks at once use
no more memory or cores than that."""

_BN = dict(momentum=0.01, eps=0.001)


class AudioBlock(nn.Module):
    """Two parallel (k x 1 over MFCC, then 1 x k over time) conv paths, k = 3 and 5, summed."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        for k in (3, 5):
            setattr(self, f"m_{k}", nn.Conv2d(in_ch, out_ch, (k, 1), padding=(k // 2, 0), bias=False))
            setattr(self, f"bn_m_{k}", nn.BatchNorm2d(out_ch, **_BN))
            setattr(self, f"t_{k}", nn.Conv2d(out_ch, out_ch, (1, k), padding=(0, k // 2), bias=False))
            setattr(self, f"bn_t_{k}", nn.BatchNorm2d(out_ch, **_BN))
        self.last = nn.Conv2d(out_ch, out_ch, 1, bias=False)
        self.bn_last = nn.BatchNorm2d(out_ch, **_BN)

    def _path(self, x: torch.Tensor, k: int) -> torch.Tensor:
        x = F.relu(getattr(self, f"bn_m_{k}")(getattr(self, f"m_{k}")(x)))
        return F.relu(getattr(self, f"bn_t_{k}")(getattr(self, f"t_{k}")(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn_last(self.last(self._path(x, 3) + self._path(x, 5))))


class VisualBlock(nn.Module):
    """Two parallel (1 x k x k spatial, then k x 1 x 1 temporal) conv paths, k = 3 and 5, summed."""

    def __init__(self, in_ch: int, out_ch: int, downsample: bool = False) -> None:
        super().__init__()
        stride = (1, 2, 2) if downsample else (1, 1, 1)
        for k in (3, 5):
            setattr(self, f"s_{k}", nn.Conv3d(in_ch, out_ch, (1, k, k), stride=stride, padding=(0, k // 2, k // 2), bias=False))
            setattr(self, f"bn_s_{k}", nn.BatchNorm3d(out_ch, **_BN))
            setattr(self, f"t_{k}", nn.Conv3d(out_ch, out_ch, (k, 1, 1), padding=(k // 2, 0, 0), bias=False))
            setattr(self, f"bn_t_{k}", nn.BatchNorm3d(out_ch, **_BN))
        self.last = nn.Conv3d(out_ch, out_ch, 1, bias=False)
        self.bn_last = nn.BatchNorm3d(out_ch, **_BN)

    def _path(self, x: torch.Tensor, k: int) -> torch.Tensor:
        x = F.relu(getattr(self, f"bn_s_{k}")(getattr(self, f"s_{k}")(x)))
        return F.relu(getattr(self, f"bn_t_{k}")(getattr(self, f"t_{k}")(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn_last(self.last(self._path(x, 3) + self._path(x, 5))))


class VisualEncoder(nn.Module):
    """[B, 1, T, 112, 112] normalised grey -> [B, T, 128] (spatial max over the 14x14 map)."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = VisualBlock(1, 32, downsample=True)
        self.block2 = VisualBlock(32, 64)
        self.block3 = VisualBlock(64, 128)

    @staticmethod
    def _pool(x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(x, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def steps(self) -> list[nn.Module]:
        """The encoder as three modules run one after another, one per block (each reaches
        BLOCK_REACH frames either side), so a caller can drop the frames between them that
        the next no longer needs (`ActiveSpeakerModel`'s edge clips)."""
        return [_Step(self.block1, self._pool), _Step(self.block2, self._pool), _Step(self.block3, _spatial_max)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps():
            x = step(x)
        return x


def _spatial_max(x: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, T, C]: the encoder's spatial max."""
    return x.amax(dim=(3, 4)).transpose(1, 2)


class _Step(nn.Module):
    """One block of the visual encoder and what follows it (a pool, or the spatial max)."""

    def __init__(self, block: nn.Module, after) -> None:
        super().__init__()
        self.block = block
        self.after = after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after(self.block(x))


class AudioEncoder(nn.Module):
    """[B, 1, 13, 4T] MFCCs -> [B, T, 128]: two stride-2 max pools over time, mean over MFCCs."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = AudioBlock(1, 32)
        self.block2 = AudioBlock(32, 64)
        self.block3 = AudioBlock(64, 128)

    @staticmethod
    def _pool(x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, (1, 3), stride=(1, 2), padding=(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._pool(self.block1(x))
        x = self._pool(self.block2(x))
        x = self.block3(x)
        return x.mean(dim=2).transpose(1, 2)


class BidirectionalGRU(nn.Module):
    """A forward GRU, then a GRU over the reversed sequence, GELU after each: [B, T, C] -> [B, T, C]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gru_forward = nn.GRU(channels, channels, num_layers=1, batch_first=True)
        self.gru_backward = nn.GRU(channels, channels, num_layers=1, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.gru_forward(x)[0])
        x = self.gru_backward(torch.flip(x, dims=[1]))[0]
        return F.gelu(torch.flip(x, dims=[1]))


class ASDBackbone(nn.Module):
    """Audio and visual embeddings summed per frame, then the bidirectional GRU."""

    def __init__(self) -> None:
        super().__init__()
        self.visualEncoder = VisualEncoder()
        self.audioEncoder = AudioEncoder()
        self.GRU = BidirectionalGRU(128)

    def encode_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """mfcc [B, 4T, 13] float -> [B, T, 128]."""
        return self.audioEncoder(mfcc.unsqueeze(1).transpose(2, 3))

    def encode_visual(self, faces: torch.Tensor) -> torch.Tensor:
        """faces [B, T, 112, 112] grey 0-255 float -> [B, T, 128]."""
        return self.visualEncoder(((faces / 255.0 - PIXEL_MEAN) / PIXEL_STD).unsqueeze(1))

    def forward(self, mfcc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """mfcc [B, 4T, 13], faces [B, T, 112, 112] -> fused features [B, T, 128]."""
        return self.GRU(self.encode_audio(mfcc) + self.encode_visual(faces))


class SpeakingHead(nn.Module):
    """The official `lossAV` module's classifier: 128 -> (not speaking, speaking)."""

    def __init__(self) -> None:
        super().__init__()
        self.FC = nn.Linear(128, 2)


class LightASD(nn.Module):
    """The checkpoint's top level: `model` (backbone) and `lossAV` (head)."""

    def __init__(self) -> None:
        super().__init__()
        self.model = ASDBackbone()
        self.lossAV = SpeakingHead()

    def forward(self, mfcc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Per-frame scores [B, T]: the class-1 output of the final linear layer."""
        return self.score_embeddings(self.model.encode_audio(mfcc), self.model.encode_visual(faces))

    def score_embeddings(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """Scores [B, T] from encoder outputs [B, T, 128] (the GRU and the head)."""
        return self.lossAV.FC(self.model.GRU(audio + visual))[..., 1]


def load_state_dict_strict(net: LightASD, path: str | os.PathLike) -> None:
    """Load an official Light-ASD `.model` file; every `model.*`/`lossAV.*` key must match.

    `lossV.*` (the visual-only training head) is accepted and ignored. A missing file raises
    MissingCheckpointError (a FileNotFoundError), anything else CheckpointError (a
    ValueError), naming the file and what is wrong.
    """
    state = read_state_dict(path)
    load_strict(net, state, path, ignore_unexpected=("lossV.",))
    net.train(False)


def _frozen_visual(encoder: VisualEncoder) -> list | None:
    """The visual encoder's steps (`VisualEncoder.steps`) traced, frozen and optimised for
    inference (TorchScript: batch norm folded into the convolutions, oneDNN's blocked
    layouts), for the CPU: the same embeddings to 1e-6 whatever the batch and length, at
    about a third of the CPU (150 frames: 0.9 s instead of 2.7 on this 2-core machine). None
    where TorchScript cannot build them (the module then runs as is). TorchScript is
    deprecated for `torch.compile`, which needs a C compiler at run time; its deprecation
    warnings are silenced here."""
    example = torch.zeros(1, 1, 2 * VISUAL_REACH + 1, CROP_SIZE, CROP_SIZE)
    frozen = []
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            for step in encoder.eval().steps():
                frozen.append(torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(step.eval(), example))))
                example = step(example)
    except (RuntimeError, torch.jit.Error) as exc:  # pragma: no cover - depends on the torch build
        log.warning("Light-ASD's visual encoder runs unfrozen: %s", exc)
        return None
    return frozen


def _cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _windows(n_frames: int, duration_s: int) -> list[tuple[int, int]]:
    """[start, end) frame ranges of consecutive windows of `duration_s` seconds; the last may be shorter."""
    step = duration_s * ASD_FPS
    return [(s, min(s + step, n_frames)) for s in range(0, n_frames, step)]


class ActiveSpeakerModel:
    """Light-ASD with its weights, scoring whole face tracks.

    `score_track` gives the official inference's numbers: the track is cut into windows
    of 1..6 s, each window is scored on its own (its convolutions zero-pad at the window
    edges, its GRU sees only that window), and the per-frame scores of the window lengths
    are averaged.

    Why it is faster than running every window: the visual encoder (most of the compute)
    only looks VISUAL_REACH frames either side, so inside a window the embedding of a frame
    further than that from the window's edges equals the whole-track one. We encode the
    track once, then re-encode 12-frame clips at each window boundary (boundaries are shared
    by all window lengths) for the frames that see the edge. The audio encoder, whose reach
    is AUDIO_REACH, is shared the same way (10-frame clips); the GRU and the head run per
    window as in the original. On the CPU a track is scored with `threads` intra-op threads
    (SCORE_THREADS), its visual batches in up to `visual_workers` threads (VISUAL_WORKERS,
    at most one per core); the same numbers whichever thread runs what.
    """

    def __init__(self, net: LightASD, device: torch.device, durations_s: Sequence[int] = DEFAULT_DURATIONS_S,
                 threads: int | None = SCORE_THREADS, visual_workers: int | None = None) -> None:
        self.net = net.eval().to(device)
        self.device = device
        self.threads = threads if device.type == "cpu" else None
        self.visual_workers = 1 if device.type != "cpu" else max(1, visual_workers or min(VISUAL_WORKERS, _cores()))
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.durations_s = tuple(int(d) for d in durations_s)
        if not self.durations_s or min(self.durations_s) < 1:
            raise ValueError(f"durations_s must be whole seconds >= 1, got {durations_s}")
        self._visual = _frozen_visual(self.net.model.visualEncoder) if device.type == "cpu" else None

    @property
    def window_period_frames(self) -> int:
        """Frames after which every window length's tiling starts afresh: the least common
        multiple of the window lengths (1500 frames, 60 s, for 1..6 s). Windows tile a track
        from its first frame (`_windows`) and each is scored on its own, so none crosses a
        multiple of this: a track cut there scores, piece by piece, exactly as it does whole
        (its frames past the audio's end too, NO_AUDIO_SCORE)."""
        return math.lcm(*(d * ASD_FPS for d in self.durations_s))

    def _encode_visual(self, faces: torch.Tensor, keep: str | None = None) -> torch.Tensor:
        """`LightASD.model.encode_visual`, through the frozen encoder where there is one.

        keep "head" or "tail": only the first (last) `len - VISUAL_REACH` frames' embeddings
        are wanted, those that do not see the clip's far (near) end; each step then runs only
        on the frames the rest still needs (about a fifth less work for an edge clip of
        `_shared_windows`), with the same numbers for the frames returned."""
        steps = self._visual or self.net.model.visualEncoder.steps()
        x = ((faces / 255.0 - PIXEL_MEAN) / PIXEL_STD).unsqueeze(1)
        for i, step in enumerate(steps):
            x = step(x)
            if keep is not None:
                wanted = faces.shape[1] - BLOCK_REACH * (i + 1)  # frames that do not see the far end yet
                frames = x.shape[1] if i == len(steps) - 1 else x.shape[2]  # [B, T, C] after the last step
                cut = slice(0, wanted) if keep == "head" else slice(frames - wanted, frames)
                x = x[:, cut] if i == len(steps) - 1 else x[:, :, cut].contiguous()
        return x

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None, durations_s: Sequence[int] = DEFAULT_DURATIONS_S) -> "ActiveSpeakerModel":
        """Load an official checkpoint; device defaults to CUDA when available, else CPU."""
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        net = LightASD()
        load_state_dict_strict(net, path)
        log.info("Light-ASD loaded from %s on %s", path, device)
        return cls(net, torch.device(device), durations_s)

    def _encode_visual_clips(self, faces: torch.Tensor, clips: list[tuple[int, int]],
                             keep: list[str | None] | None = None) -> list[torch.Tensor]:
        """Visual embeddings [len, 128] of each [start, end) clip encoded alone (keep[i]
        "head" or "tail": only those of its frames that do not see its other end, see
        `_encode_visual`); equal lengths are batched, the batches run in the visual workers
        (`_visual_pool`)."""
        keep = keep or [None] * len(clips)
        out: list[torch.Tensor | None] = [None] * len(clips)
        by_kind: dict[tuple[int, str | None], list[int]] = {}
        for i, (start, end) in enumerate(clips):
            by_kind.setdefault((end - start, keep[i]), []).append(i)
        groups = []
        for (length, kept), idx in by_kind.items():
            per_batch = max(1, MAX_BATCH_FRAMES // length)
            groups += [(idx[j:j + per_batch], kept) for j in range(0, len(idx), per_batch)]
        pool = self._visual_pool()
        if pool is None:
            results = [self._encode_visual_group(faces, clips, group, kept) for group, kept in groups]
        else:
            results = [f.result() for f in [pool.submit(self._encode_visual_group, faces, clips, group, kept)
                                            for group, kept in groups]]
        for (group, _), embs in zip(groups, results):
            for i, emb in zip(group, embs):
                out[i] = emb
        return out  # type: ignore[return-value]

    def _encode_visual_group(self, faces: torch.Tensor, clips: list[tuple[int, int]], group: list[int],
                             keep: str | None = None) -> torch.Tensor:
        """One batch of equal-length clips through the visual encoder, in whichever thread runs
        it (inference mode and the intra-op threads belong to a thread)."""
        with torch.inference_mode(), intra_op_threads(self.threads):
            return self._encode_visual(torch.stack([faces[clips[i][0]:clips[i][1]] for i in group]).float(), keep)

    def _visual_pool(self) -> ThreadPoolExecutor | None:
        """The visual workers, started on first use; None with one worker (run in the caller's thread)."""
        if self.visual_workers <= 1:
            return None
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.visual_workers, thread_name_prefix="light-asd-visual")
            return self._pool

    def _encode_audio_clips(self, mfcc: torch.Tensor, clips: list[tuple[int, int]]) -> list[torch.Tensor]:
        """Audio embeddings [len, 128] of each [start, end) clip (video frames) encoded alone; equal lengths are batched."""
        out: list[torch.Tensor | None] = [None] * len(clips)
        by_length: dict[int, list[int]] = {}
        for i, (start, end) in enumerate(clips):
            by_length.setdefault(end - start, []).append(i)
        for length, idx in by_length.items():
            per_batch = max(1, MAX_BATCH_FRAMES // length)
            for j in range(0, len(idx), per_batch):
                group = idx[j:j + per_batch]
                batch = torch.stack([mfcc[MFCC_PER_FRAME * clips[i][0]:MFCC_PER_FRAME * clips[i][1]] for i in group])
                for i, emb in zip(group, self.net.model.encode_audio(batch)):
                    out[i] = emb
        return out  # type: ignore[return-value]

    def _window_visual(self, faces: torch.Tensor, windows_by_duration: list[list[tuple[int, int]]]) -> list[list[torch.Tensor]]:
        """Per duration, per window: the visual embeddings the window would get if encoded alone."""
        return _shared_windows(lambda clips, keep: self._encode_visual_clips(faces, clips, keep), faces.shape[0],
                               VISUAL_REACH, windows_by_duration)

    def _window_audio(self, mfcc: torch.Tensor, n_frames: int,
                      windows_by_duration: list[list[tuple[int, int]]]) -> list[list[torch.Tensor]]:
        """Per duration, per window: the audio embeddings the window would get if encoded alone."""
        return _shared_windows(lambda clips, keep: self._encode_audio_clips(mfcc, clips), n_frames, AUDIO_REACH,
                               windows_by_duration)

    def _score_windows(self, windows: list[tuple[int, int]], audio: list[torch.Tensor], visual: list[torch.Tensor],
                       n_frames: int) -> torch.Tensor:
        """Scores [T] from per-window audio and visual embeddings: the GRU and the head per window."""
        out = torch.empty(n_frames, dtype=torch.float32, device=self.device)
        by_length: dict[int, list[int]] = {}
        for i, (start, end) in enumerate(windows):
            by_length.setdefault(end - start, []).append(i)
        for length, idx in by_length.items():
            scores = self.net.score_embeddings(torch.stack([audio[i] for i in idx]), torch.stack([visual[i] for i in idx]))
            for i, row in zip(idx, scores):
                out[windows[i][0]:windows[i][1]] = row
        return out

    def score_track(self, face_crops_gray_112: np.ndarray, mfcc: np.ndarray) -> np.ndarray:
        """Per-frame speaking scores [T] float32 (> 0: speaking) for one face track at 25 fps.

        face_crops_gray_112: [T, 112, 112] uint8 grey crops (models.asd_crop.crop_face).
        mfcc: [>= 4T, 13] MFCCs of the original audio over the same time span
        (models.mfcc.asd_mfcc), frame 4k aligned with video frame k. Extra MFCC frames are
        ignored; video frames the audio does not reach score NO_AUDIO_SCORE.
        Safe to call from several threads at once (one track each).
        """
        with torch.inference_mode(), intra_op_threads(self.threads):
            return self._score_track(face_crops_gray_112, mfcc)

    def _score_track(self, face_crops_gray_112: np.ndarray, mfcc: np.ndarray) -> np.ndarray:
        faces_np = np.asarray(face_crops_gray_112)
        mfcc_np = np.asarray(mfcc, dtype=np.float32)
        if faces_np.ndim != 3 or faces_np.shape[1:] != (CROP_SIZE, CROP_SIZE):
            raise ValueError(f"face crops must be [T, {CROP_SIZE}, {CROP_SIZE}] grey, got {faces_np.shape}")
        if mfcc_np.ndim != 2 or mfcc_np.shape[1] != N_MFCC:
            raise ValueError(f"mfcc must be [N, {N_MFCC}], got {mfcc_np.shape}")
        n_frames = faces_np.shape[0]
        n_scored = min(n_frames, mfcc_np.shape[0] // MFCC_PER_FRAME)
        scores = np.full(n_frames, NO_AUDIO_SCORE, dtype=np.float32)
        if n_scored < n_frames:
            log.warning("audio covers %d of %d track frames; the rest score %.1f", n_scored, n_frames, NO_AUDIO_SCORE)
        if n_scored == 0:
            return scores
        faces = torch.from_numpy(np.ascontiguousarray(faces_np[:n_scored])).to(self.device)
        feats = torch.from_numpy(np.ascontiguousarray(mfcc_np[:MFCC_PER_FRAME * n_scored])).to(self.device)
        windows_by_duration = [_windows(n_scored, d) for d in self.durations_s]
        visual = self._window_visual(faces, windows_by_duration)
        audio = self._window_audio(feats, n_scored, windows_by_duration)
        total = torch.zeros(n_scored, dtype=torch.float32, device=self.device)
        for windows, aud, vis in zip(windows_by_duration, audio, visual):
            total += self._score_windows(windows, aud, vis, n_scored)
        scores[:n_scored] = (total / len(self.durations_s)).cpu().numpy()
        return scores


def _shared_windows(encode_clips, n: int, reach: int,
                    windows_by_duration: list[list[tuple[int, int]]]) -> list[list[torch.Tensor]]:
    """Per duration, per window: the embeddings [len, C] an encoder whose output frame
    depends on the input frames up to `reach` either side would give the window encoded alone.
    `encode_clips([(start, end), ...], keep)` encodes each [start, end) frame range alone;
    where keep[i] is "head" ("tail") it may return only the clip's first (last) len - reach
    frames' embeddings. The track is encoded once (in pieces with a `reach` halo, so each
    piece is exact), then a clip of 2 * reach frames at each window boundary (shared by all
    window lengths) for the frames that see the edge."""
    pieces = [(s, min(s + MAX_BATCH_FRAMES, n)) for s in range(0, n, MAX_BATCH_FRAMES)]
    halos = [(max(0, s - reach), min(n, e + reach)) for s, e in pieces]
    starts = sorted({s for ws in windows_by_duration for s, _ in ws if s > 0})
    ends = sorted({e for ws in windows_by_duration for _, e in ws if e < n})
    edge = 2 * reach
    clips = [(s, min(s + edge, n)) for s in starts] + [(e - edge, e) for e in ends]
    keep = ([None] * len(halos) + ["head" if e - s == edge else None for s, e in clips[:len(starts)]]
            + ["tail"] * len(ends))
    encoded = encode_clips(halos + clips, keep)  # one call, so all the batches can run at once
    base = torch.cat([emb[s - lo:e - lo] for (s, e), (lo, _), emb in zip(pieces, halos, encoded)])
    embs = encoded[len(halos):]
    # A window starting at s: its first frames as in the clip [s, s + edge) (all of it when
    # the window is that short, as the clip then is the window). Ending at e: its last `reach`.
    head = {s: emb[:reach] if e - s == edge else emb for (s, e), emb in zip(clips, embs)}
    tail = {e: emb[-reach:] for e, emb in zip(ends, embs[len(starts):])}
    result = []
    for windows in windows_by_duration:
        per_window = []
        for s, e in windows:
            part = base[s:e].clone()
            if s in head:
                part[:len(head[s])] = head[s]
            if e in tail:
                part[-reach:] = tail[e]
            per_window.append(part)
        result.append(per_window)
    return result


def speaking_probability(scores: np.ndarray) -> np.ndarray:
    """Map scores to 0..1 with a logistic: 0.5 is the official decision threshold (score 0)."""
    return (1.0 / (1.0 + np.exp(-np.asarray(scores, dtype=np.float64)))).astype(np.float32)


def smooth_scores(scores: np.ndarray, radius: int = 2) -> np.ndarray:
    """Centred moving average over 2*radius+1 frames (the official demo uses radius 2), shrunk at the ends."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s.astype(np.float32)
    csum = np.concatenate([[0.0], np.cumsum(s)])
    idx = np.arange(s.size)
    lo = np.maximum(idx - radius, 0)
    hi = np.minimum(idx + radius + 1, s.size)
    return ((csum[hi] - csum[lo]) / (hi - lo)).astype(np.float32)


__all__ = [
    "ASD_FPS",
    "ActiveSpeakerModel",
    "DEFAULT_DURATIONS_S",
    "LightASD",
    "MFCC_PER_FRAME",
    "NO_AUDIO_SCORE",
    "load_state_dict_strict",
    "smooth_scores",
    "speaking_probability",
]
