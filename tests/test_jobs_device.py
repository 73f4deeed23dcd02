"""The lipsync job's device path: frames to render go up once after planning, stay tensors
through MuseTalk -> LivePortrait -> composite -> CodeFormer, and come down once before the
encoder. Runs on the CPU with torch device "cpu" and tiny random models; the CUDA case runs
where torch sees a GPU."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")
import torch  # noqa: E402

import stages.transfer  # noqa: E402
from jobs.config import Settings  # noqa: E402
from jobs.detect import detect_faces
from jobs.lipsync import lipsync  # noqa: E402
from jobs.registry import shared_registry  # noqa: E402
from jobs.schema import FaceSpec  # noqa: E402
from models.codeformer import FaceRestorer  # noqa: E402
from models.liveportrait import LivePortraitAnimator  # noqa: E402
from stages.composite import CompositeStage  # noqa: E402
from stream.device import nvenc_problem  # noqa: E402
from tests.media import read_frames, read_pts, write_video  # noqa: E402
from tests.test_codeformer import TINY as TINY_CODEFORMER  # noqa: E402
from tests.test_liveportrait import TINY as TINY_LIVEPORTRAIT  # noqa: E402
from tests.tiny_stack import write_tiny_stack  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return write_tiny_stack(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory, data_dir) -> Path:
    frames = read_frames(data_dir / "video" / "d20.mp4")[:20]
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames)


def settings_for(models_dir: Path, device: str) -> Settings:
    settings = Settings(models_dir=models_dir, device=device, encoder="h264_nvenc")
    registry = shared_registry(settings)
    registry.provide("liveportrait", LivePortraitAnimator.load(models_dir, device=device, config=TINY_LIVEPORTRAIT,
                                                               half=True))
    registry.provide("codeformer", FaceRestorer.load(models_dir, device=device, **TINY_CODEFORMER))
    return settings


class Transfers:
    """Counts uploads, full-frame .cpu()/.numpy() calls, and what the composite stage blends into."""

    def __init__(self, monkeypatch, frame_shape: tuple[int, ...]) -> None:
        self.uploads, self.cpu_calls, self.numpy_calls, self.composited = 0, 0, 0, []
        to_device, cpu, numpy, composite = (stages.transfer.to_device, torch.Tensor.cpu, torch.Tensor.numpy,
                                            CompositeStage.process)

        def counted_upload(image, device):
            self.uploads += 1
            return to_device(image, device)

        def counted_cpu(tensor, *args, **kwargs):
            self.cpu_calls += tuple(tensor.shape) == frame_shape
            return cpu(tensor, *args, **kwargs)

        def counted_numpy(tensor, *args, **kwargs):
            self.numpy_calls += tuple(tensor.shape) == frame_shape
            return numpy(tensor, *args, **kwargs)

        def watched_composite(stage, frame):
            if frame.notes.get("patches"):
                self.composited.append((frame.image.device.type, frame.notes["patches"][0].pixels.device.type))
            return composite(stage, frame)

        monkeypatch.setattr(stages.transfer, "to_device", counted_upload)
        monkeypatch.setattr(torch.Tensor, "cpu", counted_cpu)
        monkeypatch.setattr(torch.Tensor, "numpy", counted_numpy)
        monkeypatch.setattr(CompositeStage, "process", watched_composite)


def run_on(device: str, tmp_path, clip, data_dir, models_dir, monkeypatch) -> tuple[dict, Transfers, Path]:
    settings = settings_for(models_dir, device)
    bbox = detect_faces(clip, sample_fps=1, settings=settings)["frames"][0]["faces"][0]["bbox"]
    transfers = Transfers(monkeypatch, read_frames(clip)[0].shape)
    out = tmp_path / f"{device}.mp4"
    result = lipsync(clip, data_dir / "audio" / "yongen.wav", [FaceSpec("a", bbox, 200, 600)], out, settings,
                          enhance_quality=True, fidelity_weight=0.5)
    return result, transfers, out


def check_device_path(device_type: str, result: dict, transfers: Transfers, clip: Path, out: Path) -> None:
    assert result["engine"] == "musetalk" and result["liveportrait"] and result["enhanced"]
    assert read_pts(out) == read_pts(clip) and result["output"]["frame_count"] == 20
    names = [stage["name"] for stage in result["metrics"]["stages"]]
    assert names == ["decode", "track", "plan", "upload", "lipsync", "animate", "composite", "enhance", "download",
                     "encode"]
    # frames 5-14 (200-600 ms) are rendered: each goes up once and comes down once, nothing else moves
    assert 8 <= transfers.uploads <= 12
    assert transfers.cpu_calls == transfers.numpy_calls == transfers.uploads
    assert transfers.composited and set(transfers.composited) == {(device_type, device_type)}
    before, after = read_frames(clip), read_frames(out)
    assert np.abs(after[1].astype(int) - before[1].astype(int)).mean() < 2  # not uploaded, untouched
    assert np.abs(after[10].astype(int) - before[10].astype(int)).max() > 30  # re-rendered on the device


def test_musetalk_job_keeps_rendered_frames_as_tensors_on_the_cpu_device(tmp_path, clip, data_dir, models_dir,
                                                                         monkeypatch):
    result, transfers, out = run_on("cpu", tmp_path, clip, data_dir, models_dir, monkeypatch)
    assert result["device"] == "cpu"
    check_device_path("cpu", result, transfers, clip, out)
    # encoder="h264_nvenc" was asked for: without an NVENC unit it falls back to libx264 and says so
    fell_back = [w for w in result["warnings"] if "h264_nvenc" in w and "libx264" in w]
    if nvenc_problem() is None:
        assert result["encoder"] == "h264_nvenc" and not fell_back
    else:
        assert result["encoder"] == "libx264" and len(fell_back) == 1


@needs_cuda
def test_musetalk_job_keeps_rendered_frames_on_the_gpu(tmp_path, clip, data_dir, models_dir, monkeypatch):
    result, transfers, out = run_on("cuda", tmp_path, clip, data_dir, models_dir, monkeypatch)
    assert result["device"].startswith("cuda")
    engine = shared_registry(Settings(models_dir=models_dir, device="cuda", encoder="h264_nvenc")).lipsync_engine()
    assert engine.unet.model.dtype == engine.codec.vae.dtype == engine.unet.pe.dtype == torch.float16  # as --use_float16
    if nvenc_problem() is not None:  # no NVENC on this GPU (A100, H100): libx264 takes downloaded frames
        assert result["encoder"] == "libx264"
        check_device_path("cuda", result, transfers, clip, out)
        return
    # NVENC encodes from the GPU: every frame goes up once, none comes back
    assert result["encoder"] == "h264_nvenc" and read_pts(out) == read_pts(clip)
    names = [stage["name"] for stage in result["metrics"]["stages"]]
    assert names == ["decode", "track", "plan", "upload", "lipsync", "animate", "composite", "enhance", "encode"]
    assert transfers.uploads == 20 and transfers.cpu_calls == transfers.numpy_calls == 0
    before, after = read_frames(clip), read_frames(out)
    assert np.abs(after[1].astype(int) - before[1].astype(int)).mean() < 3  # untouched, through NVENC
