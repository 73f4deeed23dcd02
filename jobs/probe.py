"""Media probing: is a downloaded input the kind of file it should be, whole, and within limits?

Catches what users actually send by mistake (an HTML or XML error page, text, an empty or
truncated download, an audio file as the video, a silent video as the audio) before a job
spends time on it, and refuses inputs whose packets run past the duration limit however
short their headers claim to be.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image, UnidentifiedImageError

from stream.errors import MediaError

KINDS = ("video", "audio", "image")
KEYFRAME_CHECK_S = 2.0
"""Seconds between two keyframes the probe decodes to check the picture size."""
_HEAD_BYTES = 4096


@dataclass(frozen=True)
class MediaInfo:
    """What an input file holds. Times in seconds, sizes in pixels; None where not applicable."""

    path: Path
    kind: str
    container: str  # demuxer or image format name, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "wav", "JPEG"
    size_bytes: int
    has_video: bool
    has_audio: bool
    duration_s: float | None = None
    width: int | None = None  # coded size; stages.decode.probe_video gives the upright (rotated) size
    height: int | None = None
    fps: float | None = None  # average frame rate of the video stream, frames per second
    frame_count: int | None = None  # as declared by the container; None when it does not say
    video_codec: str | None = None
    audio_codec: str | None = None
    sample_rate: int | None = None  # Hz
    channels: int | None = None


def probe_media(path: Path, kind: str, *, max_duration_s: float | None = None,
                max_pixels: int | None = None) -> MediaInfo:
    """Open `path` as a `kind` ('video', 'audio', 'image') and describe it, or raise MediaError.

    Catches what users actually send by mistake: an HTML or XML error page, text, an
    empty or truncated download, an audio file as the video, a silent video as the audio.
    For video and audio every packet of the needed stream is demuxed (not decoded) so a
    truncated file is caught here, not halfway through a job.

    Limits are checked on what the file holds, not on what its header claims: the packets'
    own timestamps against `max_duration_s` (demuxing stops at the first one past it), and
    the first decoded picture (or the image's pixel grid, before it is decoded) against
    `max_pixels` (width x height). Either raises MediaError (HTTP 422).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, f"the {kind} file does not exist")
    size = path.stat().st_size
    if size == 0:
        raise MediaError(path, f"is empty (0 bytes): the {kind} URL returned no content")
    with path.open("rb") as fh:
        head = fh.read(_HEAD_BYTES)
    problem = _text_problem(head, kind)
    if problem:
        raise MediaError(path, problem)
    if kind == "image":
        return _probe_image(path, head, size, max_pixels)
    return _probe_av(path, kind, head, size, max_duration_s, max_pixels)


def _a(kind: str) -> str:
    """'a video', 'an audio', 'an image'."""
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _text_problem(head: bytes, kind: str) -> str | None:
    """Name the kind of text document a download turned out to be, or None for binary data."""
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:
            return None
        text = head[: exc.start].decode("utf-8")
    lowered = text.lstrip("\ufeff \t\r\n").lower()
    if lowered.startswith(("<!doctype html", "<html")) or "<html" in lowered[:1024] or "<body" in lowered[:1024]:
        return f"looks like an HTML page, not {_a(kind)}: the URL probably points to a web page or an error page"
    if lowered.startswith("<svg") or "<svg" in lowered[:1024]:
        return f"is an SVG drawing, not {_a(kind)}" + ("; use a JPEG or PNG" if kind == "image" else "")
    if lowered.startswith("<?xml") or lowered.startswith("<error"):
        code = re.search(r"<code>([^<]{1,64})</code>", text, re.IGNORECASE)
        said = f" (it says {code.group(1)})" if code else ""
        return (
            f"looks like an XML document{said}, not {_a(kind)}: storage services answer errors such as "
            "AccessDenied or NoSuchKey this way; check the URL"
        )
    if lowered.startswith(("{", "[")):
        return f"looks like JSON, not {_a(kind)}: the URL probably points to an API response"
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    if text and printable / len(text) > 0.95:
        return f"looks like a text file, not {_a(kind)}"
    return None


_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "an MP4/MOV file"),
    (0, b"\x1a\x45\xdf\xa3", "a Matroska/WebM file"),
    (0, b"RIFF", "a RIFF (WAV/AVI/WebP) file"),
    (0, b"ID3", "an MP3 file"),
    (0, b"OggS", "an Ogg file"),
    (0, b"fLaC", "a FLAC file"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"\x89PNG", "a PNG image"),
    (0, b"GIF8", "a GIF image"),
    (0, b"%PDF", "a PDF document"),
    (0, b"PK\x03\x04", "a ZIP archive"),
)


def _sniff(head: bytes) -> str | None:
    for offset, magic, label in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return label
    return None


def _probe_image(path: Path, head: bytes, size: int, max_pixels: int | None) -> MediaInfo:
    try:
        with Image.open(path) as image:  # reads the header only: the pixel grid is known before decoding
            if max_pixels and image.width * image.height > max_pixels:
                raise MediaError(path, f"is {image.width}x{image.height} ({image.width * image.height} pixels); "
                                       f"images may have at most {max_pixels} pixels "
                                       "(LIPSYNC_MAX_HEADSHOT_PIXELS); send a smaller headshot")
            image.load()
            return MediaInfo(
                path=path,
                kind="image",
                container=image.format or "unknown",
                size_bytes=size,
                has_video=False,
                has_audio=False,
                width=image.width,
                height=image.height,
            )
    except Image.DecompressionBombError as exc:
        raise MediaError(path, f"is too large to be a reference image ({exc})") from None
    except UnidentifiedImageError:
        sniffed = _sniff(head)
        what = f"looks like {sniffed}, not an image" if sniffed else "is not an image format Pillow can read"
        raise MediaError(path, f"{what}; use a JPEG, PNG or WebP image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        problem = f"is a truncated or corrupt image ({exc}); the download may have been cut short"
        raise MediaError(path, problem) from None


def _is_still_image(container: av.container.InputContainer) -> bool:
    name = container.format.name
    return name in ("image2", "webp_pipe") or name.endswith("_pipe")


def _is_cover_art(stream: av.stream.Stream) -> bool:
    return bool(int(stream.disposition) & int(av.stream.Disposition.attached_pic))


def _probe_av(path: Path, kind: str, head: bytes, size: int, max_duration_s: float | None,
              max_pixels: int | None) -> MediaInfo:
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        sniffed = _sniff(head)
        if sniffed and sniffed.split()[-1] in ("image", "document", "archive"):
            raise MediaError(path, f"looks like {sniffed}, not {_a(kind)}") from None
        raise MediaError(
            path,
            f"is not a readable {kind} file ({exc.strerror or exc}); it may be truncated, corrupt "
            "or in an unsupported format",
        ) from None
    with container:
        if _is_still_image(container):
            raise MediaError(path, f"is a still image ({container.format.name}), not {_a(kind)}")
        videos = [s for s in container.streams.video if not _is_cover_art(s)]
        audios = list(container.streams.audio)
        if kind == "video" and not videos:
            if audios:
                codec = audios[0].codec_context.name
                raise MediaError(path, f"has no video stream: it is an audio-only file ({codec}); give a video file")
            raise MediaError(path, "has no video stream; give a video file (MP4, MOV, MKV, WebM)")
        if kind == "audio" and not audios:
            if videos:
                raise MediaError(
                    path, "is a video with no audio track; give an audio file or a video that has sound"
                )
            raise MediaError(path, "has no audio stream; give an audio file (WAV, MP3, AAC, ...)")
        target = videos[0] if kind == "video" else audios[0]
        covered = _scan_packets(container, target, path, kind, max_duration_s, max_pixels)
        declared = _declared_duration(target)
        _check_complete(path, f"{kind} stream", covered.get(target.index, 0.0), declared)
        # a cut file stops every stream early; the longest one must reach the container's duration
        container_s = container.duration / av.time_base if container.duration else None
        _check_complete(path, "longest stream", max(covered.values(), default=0.0), container_s)
        duration = declared or covered.get(target.index, 0.0)
        return _media_info(path, kind, size, container, videos, audios, duration)


def _declared_duration(stream: av.stream.Stream) -> float | None:
    """The duration the stream's header declares, seconds; None when it says nothing (Matroska)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


@dataclass
class _Coverage:
    """The time span one stream's packets cover, seconds."""

    start: float | None = None
    end: float = 0.0

    def add(self, packet: av.Packet) -> None:
        if not packet.time_base:
            return
        if packet.pts is None:  # a raw stream (Annex B H.264) has no timestamps: add up durations
            self.end += float((packet.duration or 0) * packet.time_base)
            return
        t0 = float(packet.pts * packet.time_base)
        self.start = t0 if self.start is None else min(self.start, t0)
        self.end = max(self.end, float((packet.pts + (packet.duration or 0)) * packet.time_base))

    @property
    def seconds(self) -> float:
        return self.end - (self.start if self.start is not None and self.start > 0 else 0.0)


def _scan_packets(
    container: av.container.InputContainer, target: av.stream.Stream, path: Path, kind: str,
    max_duration_s: float | None = None, max_pixels: int | None = None,
) -> dict[int, float]:
    """Demux every packet (decoding only the target's first frame); seconds covered per stream index.

    Stops at the first target packet that ends past `max_duration_s` (its timestamps, not
    the header). With `max_pixels`, a video's keyframes are decoded too, one every
    KEYFRAME_CHECK_S at most (a new picture size starts at a keyframe in H.264/HEVC; an
    all-intra stream such as ProRes would otherwise be decoded whole): one over
    `max_pixels`, or of another size than the first picture, is refused here, before a job
    decodes the stream. The decode stage still checks every frame.

    A damaged last packet of the target means the file was cut; a few damaged packets
    inside are left to the decoder to conceal, many mean the file is corrupt.
    """
    coverage: dict[int, _Coverage] = {}
    pictures = _Pictures(path, max_pixels)
    decoded = False
    packets = corrupt = 0
    last_corrupt = False
    try:
        for packet in container.demux():
            if not packet.size:
                continue
            coverage.setdefault(packet.stream.index, _Coverage()).add(packet)
            if packet.stream.index != target.index:
                continue
            packets += 1
            last_corrupt = packet.is_corrupt
            corrupt += last_corrupt
            elapsed = _elapsed(coverage[target.index], packets, target)
            if max_duration_s is not None and elapsed > max_duration_s:
                raise MediaError(path, f"runs past {max_duration_s:g} s: its {kind} packets reach "
                                       f"{elapsed:.2f} s, whatever its header says; this server "
                                       "accepts at most that (LIPSYNC_MAX_DURATION_S); send a shorter clip")
            if not decoded:
                decoded = pictures.check(packet.decode())
            elif max_pixels and packet.is_keyframe and target.type == "video":
                pictures.check_keyframe(packet)
        if not decoded:
            decoded = pictures.check(target.codec_context.decode(None))
    except av.FFmpegError as exc:
        problem = f"is truncated or corrupt: reading its {kind} stream failed ({exc.strerror or exc})"
        raise MediaError(path, problem) from None
    target_end = coverage[target.index].end if target.index in coverage else 0.0
    if last_corrupt:
        raise MediaError(path, f"is truncated: its {kind} stream ends with a damaged packet at {target_end:.1f} s")
    if corrupt > max(1, packets // 100):
        raise MediaError(path, f"is corrupt: {corrupt} of {packets} {kind} packets are damaged")
    if not decoded:
        raise MediaError(path, f"has {_a(kind)} stream with no decodable frames; the file is corrupt or empty")
    return {index: span.seconds for index, span in coverage.items()}


def _elapsed(span: _Coverage, packets: int, target: av.stream.Stream) -> float:
    """Seconds a stream's packets cover so far; for video whose packets carry neither timestamps
    nor durations, their count at the stream's frame rate."""
    rate = target.average_rate or target.guessed_rate if target.type == "video" else None
    if span.start is None and span.end == 0 and rate:
        return packets / float(rate)
    return span.seconds


class _Pictures:
    """Checks decoded video pictures: at most `max_pixels`, all of the first one's size."""

    def __init__(self, path: Path, max_pixels: int | None) -> None:
        self.path = path
        self.max_pixels = max_pixels
        self.size: tuple[int, int] | None = None
        self.next_check_s = 0.0

    def check(self, frames: list) -> bool:
        """True when `frames` holds a frame; raises MediaError for a picture that breaks the rules."""
        for frame in frames:
            if not isinstance(frame, av.VideoFrame):
                continue
            width, height = frame.width, frame.height
            if self.max_pixels and width * height > self.max_pixels:
                raise MediaError(self.path, f"is {width}x{height} ({width * height} pixels per frame); this "
                                            f"server accepts at most {self.max_pixels} pixels (LIPSYNC_MAX_PIXELS); "
                                            "send a smaller resolution")
            if self.size is not None and (width, height) != self.size:
                at = f" at {float(frame.time):.2f} s" if frame.time is not None else ""
                raise MediaError(self.path, f"changes resolution mid-stream, from {self.size[0]}x{self.size[1]} to "
                                            f"{width}x{height}{at}; re-encode the video at one size")
            self.size = self.size or (width, height)
        return bool(frames)

    def check_keyframe(self, packet: av.Packet) -> None:
        """Decode one keyframe (the frames between are never sent) and check its picture,
        unless one was checked less than KEYFRAME_CHECK_S before it."""
        if packet.pts is not None and packet.time_base:
            at = float(packet.pts * packet.time_base)
            if at < self.next_check_s:
                return
            self.next_check_s = at + KEYFRAME_CHECK_S
        try:
            frames = packet.decode()
        except av.FFmpegError:  # a keyframe that needs the frames we skipped: the decode stage will see it
            return
        self.check(frames)


def _check_complete(path: Path, what: str, covered: float, declared: float | None) -> None:
    """Refuse a file whose packets stop well before the duration its header declares."""
    if declared and covered < declared - max(0.5, 0.05 * declared):
        raise MediaError(
            path,
            f"is truncated: its {what} stops at {covered:.1f} s of the {declared:.1f} s the file "
            "declares; the download was probably cut short or the file is damaged",
        )


def _media_info(
    path: Path,
    kind: str,
    size: int,
    container: av.container.InputContainer,
    videos: list,
    audios: list,
    duration: float,
) -> MediaInfo:
    video = videos[0] if videos else None
    audio = audios[0] if audios else None
    rate: Fraction | None = (video.average_rate or video.guessed_rate) if video else None
    return MediaInfo(
        path=path,
        kind=kind,
        container=container.format.name,
        size_bytes=size,
        has_video=video is not None,
        has_audio=audio is not None,
        duration_s=duration,
        width=video.codec_context.width if video else None,
        height=video.codec_context.height if video else None,
        fps=float(rate) if rate else None,
        frame_count=(video.frames or None) if video else None,
        video_codec=video.codec_context.name if video else None,
        audio_codec=audio.codec_context.name if audio else None,
        sample_rate=audio.codec_context.sample_rate if audio else None,
        channels=audio.codec_context.layout.nb_channels if audio else None,
    )

