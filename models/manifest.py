"""The weights manifest: every model file the product can use, where it lives in MODELS_DIR,
where it comes from, and how to check it.

Paths are relative to MODELS_DIR. URLs are the official public sources named by each
project. size (bytes) and sha256 are filled only where they are published or were
measured on the official file; None means "not known here", and the download then checks
only that the transfer completed. `sha256_prefix` is for torch-hub style names such as
resnet18-5c106cde.pth, whose suffix is the first hex digits of the file's sha256.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

HF = "https://huggingface.co"


@dataclass(frozen=True)
class ModelFile:
    """One file to download: `path` in MODELS_DIR, from `url`."""

    path: str
    url: str
    size: int | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A model of the product: its files, its license, and an archive to unpack if any.

    extract_to/extracted: when set, every file is a zip unpacked into MODELS_DIR/extract_to,
    and the model counts as present when all `extracted` names exist there.
    """

    name: str
    description: str
    license: str
    files: tuple[ModelFile, ...]
    non_commercial: bool = False
    extract_to: str | None = None
    extracted: tuple[str, ...] = field(default_factory=tuple)


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="buffalo_l",
        description="InsightFace buffalo_l: SCRFD detector, 68/106 landmarks, ArcFace identity",
        license="InsightFace pretrained models: non-commercial research purposes only",
        non_commercial=True,
        files=(
            ModelFile(
                "insightface/models/buffalo_l.zip",
                "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
            ),
        ),
        extract_to="insightface/models/buffalo_l",
        extracted=("1k3d68.onnx", "2d106det.onnx", "det_10g.onnx", "genderage.onnx", "w600k_r50.onnx"),
    ),
    ModelSpec(
        name="musetalk",
        description="MuseTalk 1.5 UNet and its configuration",
        license="MIT (code and weights, commercial use allowed)",
        files=(
            ModelFile("musetalkV15/unet.pth", f"{HF}/TMElyralab/MuseTalk/resolve/main/musetalkV15/unet.pth"),
            ModelFile("musetalkV15/musetalk.json", f"{HF}/TMElyralab/MuseTalk/resolve/main/musetalkV15/musetalk.json"),
        ),
    ),
    ModelSpec(
        name="sd-vae",
        description="stabilityai/sd-vae-ft-mse, the VAE MuseTalk works in",
        license="MIT",
        files=(
            ModelFile("sd-vae/config.json", f"{HF}/stabilityai/sd-vae-ft-mse/resolve/main/config.json"),
            ModelFile(
                "sd-vae/diffusion_pytorch_model.safetensors",
                f"{HF}/stabilityai/sd-vae-ft-mse/resolve/main/diffusion_pytorch_model.safetensors",
            ),
        ),
    ),
    ModelSpec(
        name="whisper",
        description="openai/whisper-tiny, MuseTalk's audio encoder",
        license="Apache-2.0",
        files=(
            ModelFile("whisper/config.json", f"{HF}/openai/whisper-tiny/resolve/main/config.json"),
            ModelFile("whisper/pytorch_model.bin", f"{HF}/openai/whisper-tiny/resolve/main/pytorch_model.bin"),
            ModelFile("whisper/preprocessor_config.json", f"{HF}/openai/whisper-tiny/resolve/main/preprocessor_config.json"),
        ),
    ),
    ModelSpec(
        name="face-parse-bisent",
        description="BiSeNet face parsing (face-parsing.PyTorch) and its torchvision ResNet-18 backbone",
        license="MIT code (zllrunning/face-parsing.PyTorch); weights trained on CelebAMask-HQ, "
        "a dataset for non-commercial research; ResNet-18 weights BSD-3-Clause (torchvision)",
        files=(
            ModelFile(
                "face-parse-bisent/79999_iter.pth",
                "https://drive.usercontent.google.com/download?id=154JgKpzCPW82qINcVieuPH3fZ2e0P812&export=download&confirm=t",
            ),
            ModelFile(
                "face-parse-bisent/resnet18-5c106cde.pth",
                "https://download.pytorch.org/models/resnet18-5c106cde.pth",
                sha256_prefix="5c106cde",
            ),
        ),
    ),
    ModelSpec(
        name="liveportrait",
        description="LivePortrait (KwaiVGI) appearance, motion, warping, generator and stitching networks",
        license="MIT",
        files=tuple(
            ModelFile(f"liveportrait/{sub}", f"{HF}/KwaiVGI/LivePortrait/resolve/main/liveportrait/{sub}")
            for sub in (
                "base_models/appearance_feature_extractor.pth",
                "base_models/motion_extractor.pth",
                "base_models/warping_module.pth",
                "base_models/spade_generator.pth",
                "retargeting_models/stitching_retargeting_module.pth",
            )
        ),
    ),
    ModelSpec(
        name="codeformer",
        description="CodeFormer face restoration and the ParseNet face parsing its paste-back uses",
        license="S-Lab License 1.0: non-commercial use only",
        non_commercial=True,
        files=(
            ModelFile(
                "codeformer/codeformer.pth",
                "https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth",
            ),
            ModelFile(
                "codeformer/parsing_parsenet.pth",
                "https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/parsing_parsenet.pth",
            ),
        ),
    ),
    # size and sha256 measured on the copies in ../shared/models/light-asd, taken from the repository.
    ModelSpec(
        name="light-asd",
        description="Light-ASD active speaker detection (AVA and TalkSet-finetuned)",
        license="MIT",
        files=(
            ModelFile(
                "light-asd/finetuning_TalkSet.model",
                "https://github.com/Junhua-Liao/Light-ASD/raw/main/weight/finetuning_TalkSet.model",
                size=4175289,
                sha256="efc375833887eefa9d209dc92810e18519b04c3c73ea35a549f2a7f40b7d94d5",
            ),
            ModelFile(
                "light-asd/pretrain_AVA_CVPR.model",
                "https://github.com/Junhua-Liao/Light-ASD/raw/main/weight/pretrain_AVA_CVPR.model",
                size=4175289,
                sha256="d44bc3ea7baa8e0946fa3921311714a630ed8b90a1928fab0dbe30d918909317",
            ),
        ),
    ),
)


def model_names(models: tuple[ModelSpec, ...] = MODELS) -> list[str]:
    return [m.name for m in models]


def get_model(name: str, models: tuple[ModelSpec, ...] = MODELS) -> ModelSpec:
    for model in models:
        if model.name == name:
            return model
    raise KeyError(f"unknown model {name!r}; known: {', '.join(model_names(models))}")


def default_models_dir() -> Path:
    """MODELS_DIR from the environment, else ./weights."""
    return Path(os.environ.get("MODELS_DIR", "weights"))
