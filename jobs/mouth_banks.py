"""The mouth-bank pass of a lipsync job: each requested person's real mouths from the whole video
(`stages.mouth_bank`), and what the response says about them."""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from jobs.config import Settings
from models.phones import recognise_phones
from models.visemes import choose_front_end, shape_at
from stages.audio import load_audio
from stages.decode import DecodeStage, VideoInfo, expected_frames
from stages.follow import SharedDetections
from stages.mouth_bank import MouthBankStage
from stream.context import JobContext
from stream.errors import MediaError
from stream.pipeline import Pipeline

log = logging.getLogger(__name__)

PHONE_RATE = 16000
"""Sample rate (Hz) the video's own audio is read at for its phones."""
BANK_FPS = 5.0
"""Frames per second the mouth-bank pass samples..."""
BANK_MAX_FRAMES = 200
"""...and at most this many frames in all, so a long video costs no more."""


def bank_sample_fps(info: VideoInfo, detect_interval: int) -> float:
    """The bank pass's sampling rate: about BANK_FPS (at most BANK_MAX_FRAMES in all), as one
    frame every whole multiple of `detect_interval` frames, so that each sample is a frame the
    track stage runs its full detection on (frame index a multiple of the interval, for a
    video whose timestamps start at 0) and can take from this pass (`SharedDetections`).
    25 fps with detection every 5 frames: 5 fps; 30 fps: 6; 60 fps: 6."""
    duration_s = max(info.duration_ms / 1000, 1e-3)
    fps = min(BANK_FPS, BANK_MAX_FRAMES / duration_s)
    interval = max(1, detect_interval)
    step = interval * max(1, round(info.fps / fps / interval))
    while info.fps / step * duration_s > BANK_MAX_FRAMES:
        step += interval
    return info.fps / step


def build_mouth_banks(video: str, info: VideoInfo, targets: Sequence, backend, settings: Settings,
                      context: JobContext, shared: SharedDetections | None = None) -> tuple[dict, float]:
    """The mouth-bank pass (`stages.mouth_bank`): each requested person's real mouths from
    the whole video, named by identity. Returns the banks by target key (a person's ranges
    share one bank) and the pass's wall time (ms). With `shared`, every sample gets a full
    detection, kept there by frame index for the track stage (which detects on those frames)."""
    people: dict[str, np.ndarray] = {}
    for target in targets:  # one bank per person, shared by that person's ranges
        if target.anchor.embedding is not None:
            people.setdefault(target.character_id, target.anchor.embedding)
    if not people:
        return {}, 0.0
    fps = bank_sample_fps(info, settings.detect_interval)
    stage = MouthBankStage(backend, people, capacity=settings.mouth_bank,
                           **({} if shared is None else {"detect_every": 1, "shared": shared}))
    pipeline = Pipeline(DecodeStage(video, sample_fps=fps), [stage], queue_size=settings.queue_size)
    # the video's own phones beside the pass: PocketSphinx runs in a child process
    # (`models.sphinx_decode`), on the core the pass leaves idle (it keeps about 1.3 busy)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="original-phones") as pool:
        phones = pool.submit(original_phones, video, info)
        metrics = context.run("bank", pipeline, expected_frames(info, fps))
        started = time.perf_counter()
        banks = {t.key: stage.banks[t.character_id] for t in targets if t.character_id in stage.banks}
        found = phones.result() if banks else (None, "no mouth bank")
    log.info("mouth bank: %s", label_with_original_phones(banks, found))
    return banks, metrics.wall_s * 1000 + (time.perf_counter() - started) * 1000


def original_phones(video: str, info: VideoInfo) -> tuple[list | None, str]:
    """The phones of the video's own audio (PocketSphinx, `models.phones`) where they fit it
    as speech (`choose_front_end`: music or noise gives none), with the front end's reason;
    else None and why not."""
    if not info.has_audio:
        return None, "the video has no audio"
    try:
        samples = load_audio(video, PHONE_RATE)
    except MediaError as exc:
        return None, f"the video's audio could not be read ({exc.problem})"
    phones = recognise_phones(samples, PHONE_RATE)
    usable, reason = choose_front_end(phones, samples, PHONE_RATE)
    if not usable:
        return None, f"the video's audio is not labelled: {reason}"
    return phones, reason


def label_with_original_phones(banks: dict, found: tuple[list | None, str]) -> str:
    """Video Rewrite's labelling: each bank sample that was the only face in its frame
    carries the mouth shape of the phone the video's own audio sounds then (`found`, from
    `original_phones`), so selection can match the new speech's shapes, not only openings.
    Returns why it did or did not label, for the logs."""
    if not banks:
        return "no mouth bank"
    phones, reason = found
    if phones is None:
        return reason
    labelled = sum(bank.label_visemes(lambda t: shape_at(phones, t)) for bank in {id(b): b for b in banks.values()}.values())
    return f"{labelled} samples labelled with the video's own phones ({reason})"


def _one_per_person(targets: Sequence) -> list:
    """The first target of each character (a person's ranges share one mouth bank)."""
    first: dict = {}
    for target in targets:
        first.setdefault(target.character_id, target)
    return list(first.values())


def bank_warnings(targets: Sequence, banks: dict) -> list[str]:
    """Say who gets synthesised mouths, and why, so a user knows why they look worse
    (once per person, however many ranges they have)."""
    warnings = []
    for target in _one_per_person(targets):
        bank = banks.get(target.key)
        who = f"face {target.character_id}"
        coverage = bank.coverage() if bank is not None else None
        if coverage is None or coverage.samples == 0:
            warnings.append(f"{who}: no usable view of this person's mouth in the video (too small, turned "
                            "away or not found): the mouth is synthesised")
        elif not coverage.has_open:
            warnings.append(f"{who}: the video never shows this person's mouth open: open mouths are synthesised")
        elif not coverage.has_closed:
            warnings.append(f"{who}: the video never shows this person's mouth closed: closed mouths are "
                            "their least open mouth's lips pressed together")
    return warnings


def bank_report(targets: Sequence, banks: dict) -> list[dict]:
    """Per requested person: what their mouth bank held and how often it was used."""
    report = []
    for target in _one_per_person(targets):
        bank = banks.get(target.key)
        if bank is None:
            continue
        coverage = bank.coverage()
        report.append({"character_id": target.character_id, "samples": coverage.samples,
                       "frames_sampled": bank.seen, "max_opening": round(coverage.max_opening, 3),
                       "teeth": round(coverage.teeth, 3),
                       "phone_labelled": sum(sample.viseme is not None for sample in bank.samples),
                       "frames_from_bank": bank.frames_from_bank,
                       "frames_synthesised": bank.frames_synthesised,
                       "frames_occluded": bank.frames_occluded})
    return report


def mouth_targets_report(features) -> dict | None:
    """Which front end made the mouth targets (the classical engine: "phones" where the
    recognised phones fit the speech, else "acoustic") and why; None for engines that have
    no such choice."""
    front_end = getattr(features, "front_end", None)
    if front_end is None:
        return None
    return {"front_end": front_end, "reason": getattr(features, "front_end_reason", "")}
