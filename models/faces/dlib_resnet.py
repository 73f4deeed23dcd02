"""dlib's face-recognition ResNet, read from dlib's own model file and run in torch.

Why: the installed dlib wheel has no BLAS, so `face_recognition_model_v1` spends ~100 ms
of CPU on one 128-d descriptor. The same network in torch (oneDNN convolutions) gives the
same descriptor for a fraction of that. Nothing is converted ahead of time: the weights
are read at load time from `dlib_face_recognition_resnet_model_v1.dat` (the
`face_recognition_models` wheel), so the two can never drift apart.

The file is dlib's binary serialization of `anet_type` from dlib's
tools/python/src/face_recognition.cpp (`loss_metric<fc_no_bias<128, avg_pool_everything<
alevel0<...alevel4<max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>
>>>>>>>>>>>>`). dlib writes a network from the outside in: the loss, then every layer's
version number from the outermost to the innermost, the input layer, and then each layer's
parameters from the innermost to the outermost, each followed by the layer's bookkeeping
(flags and cached tensors). `read_dlib_resnet` walks that layout for this one network
(`anet_layers` lists it) and checks every shape, stride and padding on the way, so a file of
another network or a damaged file is a `ValueError` saying what was found where.

Input: 150x150 RGB face chips as dlib's `get_face_chip(image, shape, 150, 0.25)` cuts them;
the input layer subtracts the per-channel means stored in the file (122.782, 117.001,
104.298) and divides by 256.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.runtime import intra_op_threads

CHIP_SIZE = 150  # pixels: input_rgb_image_sized<150>
CHIP_PADDING = 0.25  # dlib's default padding around the face in the chip (fraction of the face)
DESCRIPTOR_SIZE = 128

# dlib's float_details exponent markers for the special values.
_FLOAT_INF, _FLOAT_NINF, _FLOAT_NAN = 32000, 32001, 32002


@dataclass(frozen=True)
class LayerSpec:
    """One layer of the network, input to output, as dlib's templates declare it.

    kind: con, affine, relu, max_pool, avg_pool, add_prev, tag, skip or fc_no_bias.
    outputs: filters of a con, outputs of the fc. size/stride: window and step (pixels); an
    avg_pool of size 0 averages everything. tag: the tag id of tag, skip and add_prev.
    """

    kind: str
    outputs: int = 0
    size: int = 0
    stride: int = 1
    tag: int = 0

    @property
    def padding(self) -> int:
        """dlib's default padding for con and pools: size // 2 at stride 1, else none."""
        return self.size // 2 if self.stride == 1 else 0


def _block(filters: int, stride: int) -> list[LayerSpec]:
    """dlib's `block`: con 3x3 (stride) -> affine -> relu -> con 3x3 -> affine."""
    return [LayerSpec("con", filters, 3, stride), LayerSpec("affine"), LayerSpec("relu"),
            LayerSpec("con", filters, 3, 1), LayerSpec("affine")]


def _ares(filters: int) -> list[LayerSpec]:
    """`ares`: relu(block(x) + x)."""
    return [LayerSpec("tag", tag=1), *_block(filters, 1), LayerSpec("add_prev", tag=1), LayerSpec("relu")]


def _ares_down(filters: int) -> list[LayerSpec]:
    """`ares_down`: relu(block(x, stride 2) + avg_pool 2x2/2 (x)), zero-padded to the larger."""
    return [LayerSpec("tag", tag=1), *_block(filters, 2), LayerSpec("tag", tag=2),
            LayerSpec("skip", tag=1), LayerSpec("avg_pool", size=2, stride=2),
            LayerSpec("add_prev", tag=2), LayerSpec("relu")]


def anet_layers() -> list[LayerSpec]:
    """The layers of dlib's `anet_type`, input to output (the loss layer not included)."""
    layers = [LayerSpec("con", 32, 7, 2), LayerSpec("affine"), LayerSpec("relu"),
              LayerSpec("max_pool", size=3, stride=2)]
    layers += _ares(32) * 3                                  # alevel4
    layers += _ares_down(64) + _ares(64) * 3                 # alevel3
    layers += _ares_down(128) + _ares(128) * 2               # alevel2
    layers += _ares_down(256) + _ares(256) * 2               # alevel1
    layers += _ares_down(256)                                # alevel0
    layers += [LayerSpec("avg_pool", size=0, stride=1), LayerSpec("fc_no_bias", DESCRIPTOR_SIZE)]
    return layers


@dataclass
class LayerWeights:
    """Parameters read for one layer: con weight [F, C, k, k] and bias [F] (or None), affine
    gamma/beta [C], fc weight [inputs, outputs]; `enabled` is False for a disabled layer."""

    spec: LayerSpec
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    enabled: bool = True


@dataclass
class DlibResNetWeights:
    """Everything the forward pass needs from the file."""

    mean_rgb: tuple[float, float, float]
    layers: list[LayerWeights]


class _Reader:
    """dlib's serialize.h primitives over bytes; every failure names the offset."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.source}: not a dlib face-recognition ResNet file as expected: "
                          f"{what} (at byte {self.pos} of {len(self.data)})")

    def _take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(f"file ends inside {what} (truncated?)")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def read_int(self, what: str, max_bytes: int = 8, signed: bool = True) -> int:
        """pack_int: a control byte (byte count, 0x80 = negative for signed) then LE bytes."""
        control = self._take(1, what)[0]
        size = control & (0x0F if signed else 0x8F)
        if size == 0 or size > max_bytes:
            self.pos -= 1
            raise self.fail(f"bad integer control byte 0x{control:02x} for {what}")
        value = int.from_bytes(self._take(size, what), "little")
        return -value if signed and control & 0x80 else value

    def read_float(self, what: str) -> float:
        """float_details: int64 mantissa and int16 exponent, value = mantissa * 2**exponent."""
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.fail(f"{what} is in dlib's old text float format, which this reader does not read")
        mantissa = self.read_int(what)
        exponent = self.read_int(what, max_bytes=2)
        if exponent == _FLOAT_INF:
            return math.inf
        if exponent == _FLOAT_NINF:
            return -math.inf
        if exponent == _FLOAT_NAN:
            return math.nan
        return math.ldexp(mantissa, exponent)

    def read_bool(self, what: str) -> bool:
        ch = self._take(1, what)
        if ch not in (b"0", b"1"):
            self.pos -= 1
            raise self.fail(f"{what} should be a bool ('0' or '1'), found {ch!r}")
        return ch == b"1"

    def read_string(self, what: str) -> str:
        size = self.read_int(what, signed=False)
        if size > 256:
            raise self.fail(f"{what}: a {size}-byte name is not a layer name")
        raw = self._take(size, what)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not text: {raw[:32]!r}") from None

    def read_version(self, expected: Sequence[int], what: str) -> int:
        version = self.read_int(f"{what} version")
        if version not in expected:
            raise self.fail(f"{what} has version {version}, expected one of {list(expected)}")
        return version

    def read_name(self, expected: Sequence[str], what: str) -> str:
        start = self.pos
        name = self.read_string(f"{what} name")
        if name not in expected:
            self.pos = start
            raise self.fail(f"expected {what} ({' or '.join(expected)}), found {name!r}")
        return name

    def read_tensor(self, what: str) -> np.ndarray:
        """resizable_tensor: version 2, 4 int64 dims, then little-endian float32 data."""
        self.read_version((2,), f"{what} tensor")
        dims = tuple(self.read_int(f"{what} tensor size") for _ in range(4))
        if any(d < 0 for d in dims):
            raise self.fail(f"{what} tensor has negative size {dims}")
        count = math.prod(dims)
        raw = self._take(4 * count, f"{what} tensor data ({count} floats)")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dims)

    def read_alias(self, what: str) -> tuple[int, int, int, int]:
        """alias_tensor: version 1 and its 4 dims (a view into the params tensor)."""
        self.read_version((1,), f"{what} alias")
        return tuple(self.read_int(f"{what} alias size") for _ in range(4))  # type: ignore[return-value]


def _check(reader: _Reader, ok: bool, what: str) -> None:
    if not ok:
        raise reader.fail(what)


def _read_con(r: _Reader, spec: LayerSpec, channels: int, where: str) -> LayerWeights:
    version = r.read_name(("con_4", "con_5", "con_6"), f"{where}: con_")
    params = r.read_tensor(f"{where} params").reshape(-1)
    filters = r.read_int(f"{where} num_filters")
    nr, nc = r.read_int(f"{where} nr"), r.read_int(f"{where} nc")
    sy, sx = r.read_int(f"{where} stride_y"), r.read_int(f"{where} stride_x")
    py, px = r.read_int(f"{where} padding_y"), r.read_int(f"{where} padding_x")
    shape = r.read_alias(f"{where} filters")
    bias_shape = r.read_alias(f"{where} biases")
    for m in ("learning_rate", "weight_decay", "bias_learning_rate", "bias_weight_decay"):
        r.read_float(f"{where} {m} multiplier")
    use_bias = r.read_bool(f"{where} use_bias") if version in ("con_5", "con_6") else True
    if version == "con_6":
        r.read_bool(f"{where} use_relu")
    k = spec.size
    _check(r, (filters, nr, nc, sy, sx, py, px) == (spec.outputs, k, k, spec.stride, spec.stride,
                                                   spec.padding, spec.padding),
           f"{where}: con {filters} filters {nr}x{nc} stride {sy},{sx} padding {py},{px}, expected "
           f"{spec.outputs} filters {k}x{k} stride {spec.stride} padding {spec.padding}")
    _check(r, shape == (spec.outputs, channels, k, k),
           f"{where}: con filters of shape {shape}, expected {(spec.outputs, channels, k, k)}")
    n_weights = math.prod(shape)
    n_bias = math.prod(bias_shape) if use_bias else 0
    _check(r, params.size == n_weights + n_bias and (not use_bias or n_bias == filters),
           f"{where}: con params hold {params.size} floats, expected {n_weights} + {n_bias}")
    arrays = {"weight": params[:n_weights].reshape(shape)}
    if use_bias:
        arrays["bias"] = params[n_weights:]
    return LayerWeights(spec, arrays)


def _read_affine(r: _Reader, spec: LayerSpec, channels: int, where: str) -> LayerWeights:
    version = r.read_name(("affine_", "affine_2"), f"{where}: affine_")
    params = r.read_tensor(f"{where} params").reshape(-1)
    gamma, beta = r.read_alias(f"{where} gamma"), r.read_alias(f"{where} beta")
    mode = r.read_int(f"{where} mode")
    disabled = r.read_bool(f"{where} disabled") if version == "affine_2" else False
    _check(r, mode == 0, f"{where}: affine in mode {mode}, expected 0 (per channel, after a con)")
    _check(r, gamma == beta == (1, channels, 1, 1) and params.size == 2 * channels,
           f"{where}: affine gamma {gamma} beta {beta} params {params.size}, expected {channels} channels")
    return LayerWeights(spec, {"gamma": params[:channels], "beta": params[channels:]}, enabled=not disabled)


def _read_pool(r: _Reader, spec: LayerSpec, where: str) -> LayerWeights:
    name = "max_pool_2" if spec.kind == "max_pool" else "avg_pool_2"
    r.read_name((name,), f"{where}: {name[:-2]}")
    values = tuple(r.read_int(f"{where} {n}") for n in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"))
    expected = (spec.size, spec.size, spec.stride, spec.stride, spec.padding, spec.padding)
    _check(r, values == expected, f"{where}: {spec.kind} (nr, nc, strides, paddings) {values}, expected {expected}")
    return LayerWeights(spec)


def _read_fc(r: _Reader, spec: LayerSpec, inputs: int, where: str) -> LayerWeights:
    version = r.read_name(("fc_2", "fc_3"), f"{where}: fc_")
    outputs, n_in = r.read_int(f"{where} num_outputs"), r.read_int(f"{where} num_inputs")
    params = r.read_tensor(f"{where} params").reshape(-1)
    weights = r.read_alias(f"{where} weights")
    r.read_alias(f"{where} biases")
    bias_mode = r.read_int(f"{where} bias_mode")
    for m in ("learning_rate", "weight_decay", "bias_learning_rate", "bias_weight_decay"):
        r.read_float(f"{where} {m} multiplier")
    if version == "fc_3":
        r.read_bool(f"{where} use_bias")
    _check(r, (outputs, n_in, bias_mode) == (spec.outputs, inputs, 1),
           f"{where}: fc {n_in}->{outputs} bias mode {bias_mode}, expected {inputs}->{spec.outputs} without bias (1)")
    _check(r, weights[:2] == (inputs, outputs) and params.size == inputs * outputs,
           f"{where}: fc weights {weights} in {params.size} floats, expected {inputs}x{outputs}")
    return LayerWeights(spec, {"weight": params.reshape(inputs, outputs)})


def _read_details(r: _Reader, spec: LayerSpec, channels: int, where: str) -> LayerWeights:
    if spec.kind == "con":
        return _read_con(r, spec, channels, where)
    if spec.kind == "affine":
        return _read_affine(r, spec, channels, where)
    if spec.kind == "relu":
        version = r.read_name(("relu_", "relu_2"), f"{where}: relu_")
        return LayerWeights(spec, enabled=not (version == "relu_2" and r.read_bool(f"{where} disabled")))
    if spec.kind in ("max_pool", "avg_pool"):
        return _read_pool(r, spec, where)
    if spec.kind == "add_prev":
        r.read_name(("add_prev_",), f"{where}: add_prev_")
        return LayerWeights(spec)
    return _read_fc(r, spec, channels, where)


def _read_bookkeeping(r: _Reader, version: int, on_input: bool, where: str) -> None:
    """The add_layer fields after the details: 3 flags, cached tensors (training state)."""
    for flag in ("setup_called", "gradient_input_is_stale", "output_disabled"):
        r.read_bool(f"{where} {flag}")
    r.read_tensor(f"{where} x_grad")
    r.read_tensor(f"{where} cached_output")
    if on_input:
        r.read_tensor(f"{where} grad_final")
        if version >= 3:
            r.read_int(f"{where} sample_expansion_factor")
    elif version >= 2:
        r.read_tensor(f"{where} params_grad")


def _channels_through(layers: Sequence[LayerSpec]) -> list[int]:
    """Input channels of each layer (tags remember theirs; add_prev takes the larger)."""
    channels, tags, out = 3, {}, []
    for spec in layers:
        out.append(channels)
        if spec.kind == "tag":
            tags[spec.tag] = channels
        elif spec.kind == "skip":
            channels = tags[spec.tag]
        elif spec.kind == "add_prev":
            channels = max(channels, tags[spec.tag])
        elif spec.kind in ("con", "fc_no_bias"):
            channels = spec.outputs
    return out


def read_dlib_resnet(path: str | Path) -> DlibResNetWeights:
    """Parse dlib_face_recognition_resnet_model_v1.dat (ValueError on any mismatch)."""
    path = Path(path)
    r = _Reader(path.read_bytes(), str(path))
    layers = anet_layers()
    channels = _channels_through(layers)
    r.read_version((1,), "loss layer")
    if r.read_name(("loss_metric_", "loss_metric_2"), "the metric loss") == "loss_metric_2":
        r.read_float("loss margin")
        r.read_float("loss distance threshold")
    # Outside in: one version number per layer; tags and skips have nothing else.
    versions: list[int] = []
    for i, spec in enumerate(reversed(layers)):
        where = f"layer {len(layers) - i} ({spec.kind})"
        if spec.kind in ("tag", "skip"):
            versions.append(r.read_version((1,), where))
        elif i == len(layers) - 1:
            versions.append(r.read_version((2, 3), where))
        else:
            versions.append(r.read_version((1, 2), where))
    versions.reverse()
    r.read_name(("input_rgb_image_sized",), "the input layer")
    mean_rgb = (r.read_float("input mean red"), r.read_float("input mean green"), r.read_float("input mean blue"))
    size = (r.read_int("input rows", signed=False), r.read_int("input columns", signed=False))
    _check(r, size == (CHIP_SIZE, CHIP_SIZE), f"input is {size[0]}x{size[1]}, expected {CHIP_SIZE}x{CHIP_SIZE}")
    out: list[LayerWeights] = []
    for i, (spec, version) in enumerate(zip(layers, versions)):
        if spec.kind in ("tag", "skip"):
            out.append(LayerWeights(spec))
            continue
        where = f"layer {i + 1} ({spec.kind})"
        out.append(_read_details(r, spec, channels[i], where))
        _read_bookkeeping(r, version, on_input=i == 0, where=where)
    _check(r, r.pos == len(r.data), f"{len(r.data) - r.pos} bytes left after the last layer")
    return DlibResNetWeights(mean_rgb=mean_rgb, layers=out)


@dataclass(frozen=True)
class _Op:
    """One step of the forward pass: a conv with its affine folded in (and the relu that
    follows, if any), a pool, a tag/skip/add_prev, the global average or the fc."""

    kind: str
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    stride: int = 1
    padding: int = 0
    size: int = 0
    tag: int = 0
    relu: bool = False


def _fold(layers: Sequence[LayerWeights]) -> list[_Op]:
    """Ops from the layer list: affine_ after a con folds into its weights (w * gamma,
    b * gamma + beta), a relu into the op before it; disabled layers are dropped."""
    ops: list[_Op] = []
    for layer in layers:
        spec, a = layer.spec, layer.arrays
        if not layer.enabled:
            continue
        if spec.kind == "con":
            bias = a.get("bias", np.zeros(spec.outputs, np.float32))
            ops.append(_Op("conv", torch.from_numpy(a["weight"].copy()), torch.from_numpy(bias.copy()),
                           spec.stride, spec.padding))
        elif spec.kind == "affine":
            prev = ops[-1] if ops else None
            if prev is None or prev.kind != "conv" or prev.relu:
                raise ValueError("dlib ResNet: an affine layer that does not follow a con cannot be folded")
            gamma, beta = torch.from_numpy(a["gamma"].copy()), torch.from_numpy(a["beta"].copy())
            ops[-1] = replace(prev, weight=prev.weight * gamma[:, None, None, None], bias=prev.bias * gamma + beta)
        elif spec.kind == "relu" and ops and ops[-1].kind in ("conv", "add_prev") and not ops[-1].relu:
            ops[-1] = replace(ops[-1], relu=True)
        elif spec.kind == "relu":
            ops.append(_Op("relu", relu=True))
        elif spec.kind in ("max_pool", "avg_pool"):
            ops.append(_Op(spec.kind, size=spec.size, stride=spec.stride, padding=spec.padding))
        elif spec.kind in ("tag", "skip", "add_prev"):
            ops.append(_Op(spec.kind, tag=spec.tag))
        else:
            ops.append(_Op("fc", torch.from_numpy(a["weight"].copy())))
    return ops


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the sum over the larger of the two shapes, each operand zero-padded
    at the end of the channels, rows and columns it lacks."""
    if a.shape == b.shape:
        return a + b
    shape = [max(x, y) for x, y in zip(a.shape, b.shape)]
    out = a.new_zeros(shape)
    out[:, :a.shape[1], :a.shape[2], :a.shape[3]] += a
    out[:, :b.shape[1], :b.shape[2], :b.shape[3]] += b
    return out


class DlibResNet:
    """dlib's 128-d face descriptor network in torch (CPU, float32, inference only).

    threads: torch intra-op threads for the forward pass (None: torch's own setting, 2 on
    this box). One, because the pipeline already keeps both cores busy with its other
    stages, and OpenMP threads that wait for a core spin. Measured on the 2-core box, CPU
    per descriptor: alone under other processes' load, 14 ms with 1 thread against
    100-570 ms with 2; in one process beside two busy worker threads, ~8 ms against 9-13 ms
    with 2 (batches of 2), for no more descriptors a second.
    Cost with 1 thread: ~11 ms of CPU for one face, ~10 a face for 2, ~7.5 a face for 4
    (271 M multiply-adds a face); dlib's own call ~100 ms.
    """

    def __init__(self, weights: DlibResNetWeights, threads: int | None = 1) -> None:
        self.mean_rgb = torch.tensor(weights.mean_rgb, dtype=torch.float32).reshape(1, 3, 1, 1)
        # channels_last (NHWC) throughout: oneDNN's faster layout on CPU (11.4 against 14.7 ms
        # of CPU for one face), and the uint8 chips already come in that order.
        self.ops = [replace(op, weight=op.weight.contiguous(memory_format=torch.channels_last))
                    if op.kind == "conv" else op for op in _fold(weights.layers)]
        self.threads = threads

    @classmethod
    def from_file(cls, path: str | Path, threads: int | None = 1) -> DlibResNet:
        return cls(read_dlib_resnet(path), threads)

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        """Descriptors [N, 128] (float32, dlib's raw scale, norm ~1.4) of RGB uint8 chips
        [N, 150, 150, 3] cut as dlib.get_face_chip(image, shape, 150, 0.25) does."""
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3) or chips.dtype != np.uint8:
            raise ValueError(f"expected RGB uint8 face chips [N, {CHIP_SIZE}, {CHIP_SIZE}, 3], "
                             f"got {chips.dtype} {chips.shape}")
        if chips.shape[0] == 0:
            return np.zeros((0, DESCRIPTOR_SIZE), np.float32)
        with torch.inference_mode(), intra_op_threads(self.threads):
            x = torch.from_numpy(np.ascontiguousarray(chips)).permute(0, 3, 1, 2).float()
            x = ((x - self.mean_rgb) / 256.0).contiguous(memory_format=torch.channels_last)
            return self._forward(x).numpy()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        tags: dict[int, torch.Tensor] = {}
        for op in self.ops:
            if op.kind == "conv":
                x = F.conv2d(x, op.weight, op.bias, op.stride, op.padding)
            elif op.kind == "max_pool":
                x = F.max_pool2d(x, op.size, op.stride, op.padding)
            elif op.kind == "avg_pool":
                x = x.mean(dim=(2, 3)) if op.size == 0 else F.avg_pool2d(x, op.size, op.stride, op.padding)
            elif op.kind == "tag":
                tags[op.tag] = x
                continue
            elif op.kind == "skip":
                x = tags[op.tag]
                continue
            elif op.kind == "add_prev":
                x = _add_padded(x, tags[op.tag])
            elif op.kind == "fc":
                x = x.reshape(x.shape[0], -1) @ op.weight
            if op.relu:
                x = F.relu(x)
        return x
