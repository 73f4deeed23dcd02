"""YUV 4:2:0 <-> RGB in the source's own colour matrix, rounded, so untouched pixels come back.

The pipeline decodes every frame to RGB and encodes RGB again. Both conversions must be the
exact inverse of each other in the source's matrix, or the whole picture changes, edited
face or not:

- swscale's fast YUV -> RGB path (PyAV's `to_ndarray`) truncates: RGB came out 0.9-1.5
  levels darker than the exact conversion, and the re-encoded output's luma 1.1-1.3 levels
  below the source's everywhere (a side-by-side viewer saw the darker picture);
- the encoder converted back in BT.601 and left the stream untagged, so a BT.709 source
  (most HD video) came back in another matrix: players show its colours shifted.

Here each chroma sample covers its 2x2 block and the 3x3 matrix plus offset runs in OpenCV
with rounding; encoding averages each 2x2 block of chroma, so an untouched block gets its
very chroma back (bilinear upsampling blurred a hard chroma edge, such as red lips, a
little more at every generation). The round trip keeps luma within 1 level and chroma
within 1 (mean 0.0005). CPU a 720p frame in one thread, eight frames alive as in the
queues: 0.8 ms to RGB (swscale's truncating path 0.5-0.6, with exact rounding 3.2) and
0.4 ms back (OpenCV's BT.601 0.25). The encoder tags the stream with the source's matrix,
range, primaries and transfer so players show both alike.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

import av
import cv2
import numpy as np
from av.video.reformatter import Interpolation

LUMA_WEIGHTS = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 6: (0.299, 0.114),
                7: (0.212, 0.087), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}
"""(Kr, Kb) per FFmpeg colour space (AVColorSpace): BT.709, FCC, BT.470BG, SMPTE 170M,
SMPTE 240M, BT.2020 (NCL and CL). Unspecified (2) is read as BT.601, as swscale and
players do for SD video."""
UNSPECIFIED = 2
"""AVColorSpace, AVColorPrimaries and AVColorTransferCharacteristic's "unspecified"."""
FULL_RANGE = 2
"""AVColorRange JPEG: 0-255 luma and chroma."""
FAST_FORMATS = ("yuv420p", "yuvj420p", "nv12")
EXACT_SWSCALE = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
"""swscale with rounding and full chroma interpolation, for inputs the fast path does not
take (4:2:2, 4:4:4, 10-bit, odd sizes): unbiased, ~3 ms a 720p frame."""


@dataclass(frozen=True)
class ColourSpace:
    """A video's colour description: the AVColorSpace matrix, AVColorRange, primaries and
    transfer (tags only: pixels are never converted between primaries or transfers)."""

    matrix: int = UNSPECIFIED
    color_range: int = 0
    primaries: int = UNSPECIFIED
    transfer: int = UNSPECIFIED

    @classmethod
    def of(cls, source) -> ColourSpace:
        """From a decoded frame or a stream's codec context (attributes of the same names);
        a yuvj pixel format is full range whatever its tag says."""
        color_range = int(getattr(source, "color_range", 0) or 0)
        fmt = getattr(source, "format", None) or getattr(source, "pix_fmt", None)
        if str(getattr(fmt, "name", fmt) or "").startswith("yuvj"):
            color_range = FULL_RANGE
        return cls(int(getattr(source, "colorspace", UNSPECIFIED) or UNSPECIFIED), color_range,
                   int(getattr(source, "color_primaries", UNSPECIFIED) or UNSPECIFIED),
                   int(getattr(source, "color_trc", UNSPECIFIED) or UNSPECIFIED))

    @property
    def full_range(self) -> bool:
        return self.color_range == FULL_RANGE

    @property
    def known(self) -> bool:
        return self.matrix in LUMA_WEIGHTS or self.matrix == UNSPECIFIED

    @cached_property
    def to_yuv(self) -> np.ndarray:
        """3x4 affine map from RGB (0-255) to Y, U, V (0-255 code values)."""
        kr, kb = LUMA_WEIGHTS.get(self.matrix, LUMA_WEIGHTS[5])
        kg = 1.0 - kr - kb
        rows = np.array([[kr, kg, kb],
                         [-kr / (2 * (1 - kb)), -kg / (2 * (1 - kb)), 0.5],
                         [0.5, -kg / (2 * (1 - kr)), -kb / (2 * (1 - kr))]])
        scale, offset = ((255.0, 255.0, 255.0), (0.0, 128.0, 128.0)) if self.full_range \
            else ((219.0, 224.0, 224.0), (16.0, 128.0, 128.0))
        return np.hstack([rows * np.array(scale)[:, None] / 255.0, np.array(offset)[:, None]]).astype(np.float32)

    @cached_property
    def to_rgb(self) -> np.ndarray:
        """3x4 affine map from Y, U, V code values to RGB (0-255): `to_yuv`'s inverse."""
        forward = self.to_yuv.astype(np.float64)
        inverse = np.linalg.inv(forward[:, :3])
        return np.hstack([inverse, (-inverse @ forward[:, 3])[:, None]]).astype(np.float32)

    def tag(self, codec_context) -> None:
        """Write this description into an encoder's context (the stream's VUI). A matrix this
        module does not convert in (RGB, YCgCo...) is written as BT.601, untagged."""
        codec_context.colorspace = self.matrix if self.known else UNSPECIFIED
        codec_context.color_range = self.color_range
        codec_context.color_primaries = self.primaries
        codec_context.color_trc = self.transfer


BT601 = ColourSpace()
"""An untagged video, read (and written back, untagged) as BT.601 limited range."""


def i420_to_rgb(i420: np.ndarray, colour: ColourSpace) -> np.ndarray:
    """(H*3/2)xW planar Y, U, V (even H and W) -> HxWx3 uint8 RGB, rounded."""
    height, width = i420.shape[0] * 2 // 3, i420.shape[1]
    quarter = height * width // 4
    flat = i420.reshape(-1)
    u = flat[height * width:height * width + quarter].reshape(height // 2, width // 2)
    v = flat[height * width + quarter:].reshape(height // 2, width // 2)
    return planes_to_rgb(i420[:height], u, v, colour)


def planes_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, colour: ColourSpace) -> np.ndarray:
    """4:2:0 planes (Y HxW, U and V H/2 x W/2, uint8) -> HxWx3 uint8 RGB, rounded."""
    height, width = y.shape
    chroma = [cv2.resize(np.ascontiguousarray(plane), (width, height), dst=_scratch(name, (height, width)),
                         interpolation=cv2.INTER_NEAREST) for name, plane in (("u", u), ("v", v))]
    return cv2.transform(cv2.merge([y, *chroma], dst=_scratch("yuv", (height, width, 3))), colour.to_rgb)


def rgb_to_i420(image: np.ndarray, colour: ColourSpace) -> np.ndarray:
    """HxWx3 uint8 RGB (even H and W) -> (H*3/2)xW planar Y, U, V, chroma the mean of each 2x2 block."""
    height, width = image.shape[:2]
    out = np.empty((height * 3 // 2, width), np.uint8)
    yuv = cv2.transform(np.ascontiguousarray(image), colour.to_yuv, dst=_scratch("yuv", (height, width, 3)))
    _, u, v = cv2.split(yuv, [out[:height], _scratch("u", (height, width)), _scratch("v", (height, width))])
    flat, quarter = out.reshape(-1), height * width // 4
    for start, plane in ((height * width, u), (height * width + quarter, v)):
        cv2.resize(plane, (width // 2, height // 2), dst=flat[start:start + quarter].reshape(height // 2, width // 2),
                   interpolation=cv2.INTER_AREA)
    return out


_scratch_arrays = threading.local()


def _scratch(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """This thread's scratch array `name`, kept from frame to frame. The conversions' five
    full-size temporaries, new each frame, made glibc map fresh pages for ~10 MB a 720p frame
    in a process that had imported the job's libraries (2,600 page faults a frame; the codec
    floor fell from 155-165 to 100-105 fps)."""
    arrays = _scratch_arrays.__dict__.setdefault("arrays", {})
    array = arrays.get(name)
    if array is None or array.shape != shape:
        array = arrays[name] = np.empty(shape, np.uint8)
    return array


def frame_to_rgb(av_frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame's HxWx3 uint8 RGB in its own matrix and range, rounded (see the module)."""
    colour = ColourSpace.of(av_frame)
    name = av_frame.format.name
    if name in FAST_FORMATS and av_frame.width % 2 == 0 and av_frame.height % 2 == 0 and colour.known:
        if name == "nv12":  # what a hardware decoder hands back: U and V interleaved
            chroma = _plane_view(av_frame.planes[1], 2).reshape(av_frame.height // 2, -1, 2)
            return planes_to_rgb(_plane_view(av_frame.planes[0]), chroma[..., 0], chroma[..., 1], colour)
        return planes_to_rgb(*(_plane_view(plane) for plane in av_frame.planes), colour)
    return av_frame.to_ndarray(format="rgb24", interpolation=EXACT_SWSCALE, threads=1)


def read_rgb_frames(path) -> list[np.ndarray]:
    """Every frame of a video file as HxWx3 uint8 RGB, as the pipeline's decoder makes them
    (for scripts and tests that compare an output's pixels with its source's)."""
    with av.open(str(path)) as container:
        return [frame_to_rgb(frame) for frame in container.decode(video=0)]


def _plane_view(plane, bytes_per_sample: int = 1) -> np.ndarray:
    """A plane's pixels as a numpy view of the frame's own buffer (rows padded to
    `line_size`), without the copy `to_ndarray` makes (~0.6 ms a 720p frame)."""
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, :plane.width * bytes_per_sample]
