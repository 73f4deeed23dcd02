"""Timed phones -> per-frame mouth targets, with coarticulation (after Rhubarb Lip Sync).

Phones map to a small set of mouth shapes (Rhubarb's A-H and X, plus "I" for spread
vowels), each with a target opening (0 closed .. 1 this speaker's widest "aa"), a width
(-1 spread .. 0 neutral .. +1 rounded) and two flags: lips closed (p/b/m, silence) and
lower lip to the upper teeth (f/v). Diphthongs move from their first shape to their
second. Frame i covers [i/fps, (i+1)/fps) seconds; its centre is (i + 0.5)/fps.

Coarticulation, applied in this order:
  1. anticipation: frame i shows the shape of the phone sounding `lead_ms` after its centre;
  2. short phones: a closure or f/v that no frame centre falls in still gets the nearest frame;
  3. short pauses: silence shorter than `min_pause_ms` inside speech keeps the lips slightly
     apart (shape B) instead of snapping shut; longer silence is the relaxed closed mouth X;
  4. closure hold: a p/b/m closure lasts at least `min_closure_ms` (2 frames at 25 fps),
     extended into the frames before it (the lips close early, not late);
  5. lip width runs ahead: a tongue consonant (shape B) takes the width of the vowel it leads
     into within `round_ahead_ms` (anticipatory rounding and spreading); HH takes the whole
     shape of its vowel;
  6. easing: the frames within `ease_ms` (one frame at 25 fps) before a change of opening or width move part way to
     the next target, so the mouth starts moving 1-2 frames before the phone. Closed
     frames stay closed (opening 0), and the first frame of each run of one shape keeps its
     own target, so a one-frame vowel still reaches its opening.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from math import ceil

import numpy as np

from models.phones import SILENCE, Phone, check_audio


@dataclass(frozen=True)
class Shape:
    """One mouth shape: target opening (0-1), width (-1 spread .. +1 rounded), and flags."""

    name: str
    opening: float
    width: float
    closed: bool = False
    labiodental: bool = False


SHAPES: dict[str, Shape] = {s.name: s for s in (
    Shape("X", 0.0, 0.0, closed=True),          # rest: silence, lips relaxed and together
    Shape("A", 0.0, 0.0, closed=True),          # closed: P B M
    Shape("B", 0.2, 0.0),                       # teeth nearly together: most consonants
    Shape("I", 0.3, -1.0),                      # spread: IY IH Y (and the end of EY AY OY)
    Shape("C", 0.6, -0.3),                      # open: EH AE AH
    Shape("D", 1.0, 0.0),                       # wide open: AA (and the start of AY AW)
    Shape("E", 0.5, 0.5),                       # slightly rounded: AO ER R
    Shape("F", 0.3, 1.0),                       # puckered: UW UH OW W
    Shape("G", 0.1, 0.0, labiodental=True),     # lower lip to upper teeth: F V
    Shape("H", 0.4, 0.0),                       # tongue up, mouth open: L
)}

_VOWEL_SHAPES = frozenset("CDEFI")

PHONE_SHAPES: dict[str, tuple[str, ...]] = {
    "SIL": ("X",), "SPN": ("C",),
    "P": ("A",), "B": ("A",), "M": ("A",),
    "F": ("G",), "V": ("G",),
    "L": ("H",),
    "AA": ("D",), "AE": ("C",), "AH": ("C",), "EH": ("C",),
    "IY": ("I",), "IH": ("I",), "Y": ("I",),
    "AO": ("E",), "ER": ("E",), "R": ("E",),
    "UW": ("F",), "UH": ("F",), "W": ("F",),
    "OW": ("E", "F"), "AW": ("D", "F"), "AY": ("D", "I"), "EY": ("C", "I"), "OY": ("E", "I"),
    **{p: ("B",) for p in ["CH", "D", "DH", "G", "HH", "JH", "K", "N", "NG", "S", "SH", "T", "TH", "Z", "ZH"]},
}
"""Phone -> its shape, or (first, second) for a diphthong (the second from `diphthong_split` on)."""

VOWELS = frozenset(["AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"])
LINGUAL = "B"
"""The shape of consonants made by the tongue: the lips are free to anticipate the next vowel."""


@dataclass(frozen=True)
class VisemeConfig:
    """Coarticulation tunables (times in ms)."""

    lead_ms: float = 20.0
    min_closure_ms: float = 80.0
    min_pause_ms: float = 120.0
    ease_ms: float = 40.0
    diphthong_split: float = 0.6
    round_ahead_ms: float = 200.0


@dataclass
class VisemeTrack:
    """Per-frame mouth targets over n_frames video frames at fps.

    opening: 0-1 (1 = this speaker's wide open "aa"); width: -1 spread .. 0 neutral .. +1
    rounded; closed: lips together; labiodental: lower lip to upper teeth; phone: the phone
    sounding at each frame centre; shape: the mouth shape chosen for each frame. front_end
    says which analysis produced the targets ("phones" or "acoustic") and reason why.
    """

    fps: float
    opening: np.ndarray
    width: np.ndarray
    closed: np.ndarray
    labiodental: np.ndarray
    phone: list[str]
    shape: list[str] = field(default_factory=list)
    front_end: str = "phones"
    reason: str = ""

    @property
    def n_frames(self) -> int:
        return len(self.opening)


def shape_letter(label: str) -> str:
    """The mouth shape (letter in SHAPES) a phone starts with."""
    return PHONE_SHAPES.get(label, ("C",))[0]


def shape_at(phones: list[Phone], time_ms: float) -> str:
    """The mouth shape the phones say at `time_ms` (silence outside them)."""
    starts = np.array([p.start_ms for p in phones])
    return shape_letter(_phone_at(phones, starts, time_ms)) if phones else "X"


def _phone_shapes(phones: list[Phone]) -> list[tuple[str, ...]]:
    """Each phone's shape(s); HH (breath) takes the shape of the vowel it leads into."""
    shapes = [PHONE_SHAPES.get(p.label, ("C",)) for p in phones]
    for k, p in enumerate(phones[:-1]):
        if p.label == "HH" and phones[k + 1].label in VOWELS:
            shapes[k] = shapes[k + 1][:1]
    return shapes


def _shape_at(phones: list[Phone], shapes: list[tuple[str, ...]], starts: np.ndarray, t_ms: float,
              split: float) -> str:
    k = int(np.searchsorted(starts, t_ms, side="right")) - 1
    if k < 0 or t_ms >= phones[-1].end_ms:
        return "X"
    p = phones[k]
    if len(shapes[k]) == 1:
        return shapes[k][0]
    return shapes[k][0] if t_ms < p.start_ms + split * p.duration_ms else shapes[k][1]


def _phone_at(phones: list[Phone], starts: np.ndarray, t_ms: float) -> str:
    k = int(np.searchsorted(starts, t_ms, side="right")) - 1
    if k < 0 or t_ms >= phones[-1].end_ms:
        return SILENCE
    return phones[k].label


def _check(phones: list[Phone], fps: float, n_frames: int) -> list[Phone]:
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    if int(n_frames) != n_frames or n_frames < 0:
        raise ValueError(f"n_frames must be a whole number >= 0, got {n_frames!r}")
    ordered = sorted(phones, key=lambda p: p.start_ms)
    for a, b in itertools.pairwise(ordered):
        if b.start_ms < a.end_ms - 1e-6:
            raise ValueError(f"phones overlap: {a} and {b}; pass the recogniser's tiling of the audio")
    for p in ordered:
        if p.end_ms < p.start_ms:
            raise ValueError(f"phone ends before it starts: {p}")
    return ordered


def viseme_track(phones: list[Phone], fps: float, n_frames: int, config: VisemeConfig | None = None,
                 front_end: str = "phones", reason: str = "") -> VisemeTrack:
    """Per-frame mouth targets for `phones` (as from `recognise_phones`) at `fps` over `n_frames` frames.

    Frames outside the phones are silence (relaxed, closed).
    """
    cfg = config or VisemeConfig()
    phones = _check(phones, fps, n_frames)
    n = int(n_frames)
    frame_ms = 1000.0 / fps
    centres = (np.arange(n) + 0.5) * frame_ms
    if not phones:
        phones = [Phone(SILENCE, 0.0, 0.0)]
    starts = np.array([p.start_ms for p in phones])

    shapes = _phone_shapes(phones)
    shape = [_shape_at(phones, shapes, starts, c + cfg.lead_ms, cfg.diphthong_split) for c in centres]
    label = [_phone_at(phones, starts, c) for c in centres]

    # 2. short closures and f/v that fell between frame centres take the nearest frame
    for p in phones:
        s = PHONE_SHAPES.get(p.label, ("C",))[0]
        if s not in ("A", "G") or n == 0:
            continue
        lo, hi = p.start_ms - cfg.lead_ms, p.end_ms - cfg.lead_ms
        if np.searchsorted(centres, lo) == np.searchsorted(centres, hi):  # no centre in [lo, hi)
            i = int(np.clip(np.floor((0.5 * (lo + hi)) / frame_ms), 0, n - 1))
            if shape[i] != "A":  # a closure wins over an f/v in the same frame
                shape[i] = s

    # 3. short pauses inside speech: lips slightly apart, not shut
    shifted = centres + cfg.lead_ms
    for k, p in enumerate(phones):
        if p.label != SILENCE or p.duration_ms >= cfg.min_pause_ms or k == 0 or k == len(phones) - 1:
            continue
        for i in range(int(np.searchsorted(shifted, p.start_ms)), int(np.searchsorted(shifted, p.end_ms))):
            if shape[i] == "X":
                shape[i] = "B"

    # 4. closures last at least min_closure_ms, extended into the frames before them
    need = max(1, ceil(cfg.min_closure_ms / frame_ms - 1e-9))
    i = 0
    while i < n:
        if shape[i] != "A":
            i += 1
            continue
        j = i
        while j < n and shape[j] == "A":
            j += 1
        missing = need - (j - i)
        lo = i
        while missing > 0 and lo > 0 and shape[lo - 1] not in ("A", "X"):
            lo -= 1
            shape[lo] = "A"
            missing -= 1
        hi = j
        while missing > 0 and hi < n and shape[hi] not in ("A", "X"):
            shape[hi] = "A"
            hi += 1
            missing -= 1
        i = hi

    opening = np.array([SHAPES[s].opening for s in shape], dtype=np.float32)
    width = np.array([SHAPES[s].width for s in shape], dtype=np.float32)
    closed = np.array([SHAPES[s].closed for s in shape], dtype=bool)
    labiodental = np.array([SHAPES[s].labiodental for s in shape], dtype=bool)

    # 5. lip width runs ahead: tongue consonants take the width (rounding or spreading) of the
    #    vowel they lead into, up to round_ahead_ms ahead ("st-ew" is rounded from the s)
    ahead = max(1, round(cfg.round_ahead_ms / frame_ms))
    for i in range(n):
        if shape[i] != LINGUAL:
            continue
        for j in range(i + 1, min(n, i + 1 + ahead)):
            if shape[j] == LINGUAL:
                continue
            if shape[j] in _VOWEL_SHAPES:
                width[i] = SHAPES[shape[j]].width
            break

    # 6. easing: the frames before a change start moving towards the next target
    ease_frames = max(1, round(cfg.ease_ms / frame_ms))
    target_open, target_width = opening.copy(), width.copy()
    for i in range(n - 1):
        if target_open[i + 1] == target_open[i] and target_width[i + 1] == target_width[i]:
            continue
        for back in range(1, ease_frames + 1):
            k = i + 1 - back
            if k < 1 or closed[k] or shape[k - 1] != shape[i]:
                break  # keep the first frame of each run at its own target
            frac = (ease_frames + 1 - back) / (ease_frames + 1)
            opening[k] = target_open[k] + frac * (target_open[i + 1] - target_open[k])
            width[k] = target_width[k] + frac * (target_width[i + 1] - target_width[k])
    return VisemeTrack(fps=float(fps), opening=opening, width=width, closed=closed, labiodental=labiodental,
                       phone=label, shape=shape, front_end=front_end, reason=reason)


# --- front-end choice: is the phone recognition trustworthy for this audio? ---------------

HOP_MS = 10.0


@dataclass(frozen=True)
class FrontEndConfig:
    """Thresholds of `choose_front_end` (levels in dB, rates in phones per second of speech)."""

    min_duration_ms: float = 500.0
    silent_db: float = -60.0
    min_range_db: float = 8.0
    vad_fraction: float = 0.35
    min_agreement: float = 0.7
    min_phone_rate: float = 4.0
    max_phone_rate: float = 20.0
    min_envelope_corr: float = 0.2


@dataclass(frozen=True)
class FrontEndEvidence:
    """What `choose_front_end` measured, on a 10 ms grid.

    level_range_db: 95th minus 10th percentile of the speech-band level; agreement: fraction of
    hops where the recogniser's speech/silence matches an energy VAD; phone_rate: speech phones
    per second of recognised speech; envelope_corr: correlation of the phones' openings with
    the speech-band level over the voiced (VAD-active) time.
    """

    duration_ms: float
    peak_db: float
    level_range_db: float
    agreement: float
    phone_rate: float
    envelope_corr: float


def speech_band_level(samples: np.ndarray, rate: int) -> np.ndarray:
    """Speech-band (100-4000 Hz) level in dB per 10 ms hop (25 ms Hann windows at 16 kHz)."""
    from models.phones import to_16k

    x = to_16k(np.asarray(samples, dtype=np.float32), int(rate)).astype(np.float64)
    win, hop = 400, 160
    n = max(1, ceil(len(x) / hop))
    pad = np.pad(x, (win // 2, win // 2 + hop * n + win - len(x)))
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    spec = np.abs(np.fft.rfft(pad[idx] * np.hanning(win), axis=1)) ** 2
    freqs = np.fft.rfftfreq(win, 1.0 / 16000)
    band = (freqs >= 100) & (freqs < 4000)
    return 10.0 * np.log10(spec[:, band].sum(axis=1) + 1e-10)


def _phone_grid(phones: list[Phone], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(speech mask, opening target) of `phones` on the 10 ms grid (hop centres)."""
    t = (np.arange(n) + 0.5) * HOP_MS
    speech = np.zeros(n, dtype=bool)
    opening = np.zeros(n)
    for p in phones:
        m = (t >= p.start_ms) & (t < p.end_ms)
        speech[m] = p.is_speech
        opening[m] = SHAPES[PHONE_SHAPES.get(p.label, ("C",))[0]].opening
    return speech, opening


def front_end_evidence(phones: list[Phone], samples: np.ndarray, rate: int) -> FrontEndEvidence:
    """Measure how well `phones` fit the audio's own energy rhythm (see FrontEndEvidence)."""
    samples = check_audio(samples, rate)
    level = speech_band_level(samples, rate)
    n = len(level)
    duration_ms = 1000.0 * len(samples) / float(rate)
    lo, hi = np.percentile(level, [10, 95])
    vad = level > lo + 0.35 * (hi - lo)
    speech, opening = _phone_grid(phones, n)
    agreement = float(np.mean(vad == speech)) if n else 0.0
    n_speech = sum(1 for p in phones if p.is_speech)
    speech_s = sum(p.duration_ms for p in phones if p.is_speech) / 1000.0
    rate_ps = n_speech / speech_s if speech_s > 0 else 0.0
    smooth = np.convolve(opening, np.ones(5) / 5, mode="same")
    corr = 0.0
    if vad.sum() > 10 and np.std(smooth[vad]) > 1e-6 and np.std(level[vad]) > 1e-6:
        corr = float(np.corrcoef(smooth[vad], level[vad])[0, 1])
    return FrontEndEvidence(duration_ms, float(level.max()) if n else -100.0, float(hi - lo), agreement,
                            float(rate_ps), corr)


def choose_front_end(phones: list[Phone], samples: np.ndarray, rate: int,
                     config: FrontEndConfig | None = None) -> tuple[bool, str]:
    """(use the phones?, why) for this audio.

    The phones are trusted only where the audio has a speech rhythm (pauses, a level range
    of at least `min_range_db`), the recognised speech/silence agrees with an energy VAD,
    the phone rate is plausible for speech, and the phones' openings rise and fall with the
    level (vowels loud, consonants quiet). Otherwise the acoustic front end should run.
    """
    cfg = config or FrontEndConfig()
    ev = front_end_evidence(phones, check_audio(samples, rate), rate)
    facts = (f"level range {ev.level_range_db:.0f} dB, speech/silence agreement {ev.agreement:.2f}, "
             f"{ev.phone_rate:.1f} phones/s, opening-level correlation {ev.envelope_corr:.2f}")
    if ev.duration_ms < cfg.min_duration_ms:
        return False, f"audio too short to judge ({ev.duration_ms:.0f} ms)"
    if ev.peak_db < cfg.silent_db:
        return False, "audio is silent"
    if ev.level_range_db < cfg.min_range_db:
        return False, f"no pauses in the audio (continuous sound, noise or music): {facts}"
    if ev.agreement < cfg.min_agreement:
        return False, f"recognised speech does not match the audio's pauses: {facts}"
    if not cfg.min_phone_rate <= ev.phone_rate <= cfg.max_phone_rate:
        return False, f"implausible phone rate for speech: {facts}"
    if ev.envelope_corr < cfg.min_envelope_corr:
        return False, f"recognised phones do not follow the loudness of the speech: {facts}"
    return True, f"phones fit the speech: {facts}"
