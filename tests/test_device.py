"""stream/device.py: device resolution and every fallback, on a machine with or without a GPU."""
import subprocess
import sys

import pytest

from models.runtime import is_cuda, onnx_providers, resolve_device
from stream import device
from stream.device import (
    choose_encoder,
    is_tensor,
    job_device,
    nvenc_problem,
    video_hwaccel,
)
from tests.conftest import ROOT


def test_auto_resolves_to_cuda_only_when_torch_sees_a_gpu():
    torch = pytest.importorskip("torch")
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cuda:1") == "cuda:1" and resolve_device("cpu") == "cpu"
    assert is_cuda("cuda:1") and is_cuda(torch.device("cuda", 0)) and not is_cuda("cpu")
    assert is_tensor(torch.zeros(1)) and not is_tensor([0])


def test_host_only_engine_on_auto_is_cpu_without_importing_torch():
    code = ("import sys; from stream.device import job_device; "
            "print(job_device('auto'), job_device('cuda'), 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["cpu", "cuda", "False"]


def test_a_neural_engine_decides_the_job_device():
    class Engine:
        device = "cuda:0"

    assert job_device("cpu", Engine()) == "cuda:0"
    assert job_device("auto", object()) == "cpu"


def test_onnx_providers_put_cuda_first_only_when_asked_and_present(monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert onnx_providers("cuda") == ["CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert onnx_providers("cuda:0") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]


def test_onnx_providers_on_this_machine():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    assert onnx_providers("cuda") == ["CPUExecutionProvider"]


def test_video_hwaccel_only_for_cuda_with_ffmpeg_cuda(monkeypatch):
    import av.codec.hwaccel

    assert video_hwaccel("cpu") is None
    monkeypatch.setattr(av.codec.hwaccel, "hwdevices_available", lambda: ["cuda"])
    accel = video_hwaccel("cuda:1")
    assert accel is not None and accel.device_id == 1 and accel.allow_software_fallback
    monkeypatch.setattr(av.codec.hwaccel, "hwdevices_available", lambda: ["vaapi"])
    assert video_hwaccel("cuda") is None


def test_encoder_choice_and_fallbacks(monkeypatch):
    def must_not_probe():
        raise AssertionError("NVENC probed for a libx264 choice")

    monkeypatch.setattr(device, "nvenc_problem", must_not_probe)
    assert choose_encoder("libx264", "cuda").codec == "libx264"
    assert choose_encoder("auto", "cpu") == device.EncoderChoice("libx264", None)
    monkeypatch.setattr(device, "nvenc_problem", lambda: "no NVENC unit")
    auto = choose_encoder("auto", "cuda")
    assert auto.codec == "libx264" and auto.warning is None  # auto falls back silently (logged)
    asked = choose_encoder("h264_nvenc", "cpu")
    assert asked.codec == "libx264" and "h264_nvenc" in asked.warning and "no NVENC unit" in asked.warning
    monkeypatch.setattr(device, "nvenc_problem", lambda: None)
    assert choose_encoder("auto", "cuda") == device.EncoderChoice("h264_nvenc", None)
    with pytest.raises(ValueError, match="libx264"):
        choose_encoder("x265", "cpu")


def test_nvenc_probe_opens_a_real_encoder():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU may have NVENC")
    assert nvenc_problem()  # no GPU: the encoder cannot open, and the reason is kept
