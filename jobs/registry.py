"""ModelRegistry: loads each model once per process and says what is really loaded.

Models are slow to load and fast to reuse, so the server and the CLI share one registry.
`/health` reads `status()`: a `*_loaded` flag is true only once that model has been
loaded successfully, never because its files merely exist.
"""
from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any, Callable

from jobs.config import Settings
from models.faces.base import FaceBackend
from models.faces.select import load_face_backend

log = logging.getLogger(__name__)


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._models: dict[str, Any] = {}
        self._errors: dict[str, str] = {}

    def _get(self, key: str, loader: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._models:
                try:
                    self._models[key] = loader()
                except Exception as exc:
                    self._errors[key] = f"{type(exc).__name__}: {exc}"
                    raise
                self._errors.pop(key, None)
            return self._models[key]

    def face_backend(self) -> FaceBackend:
        return self._get("faces", lambda: load_face_backend(Path(self.settings.models_dir),
                                                            self.settings.face_backend, self.settings.device))

    def lipsync_engine(self) -> Any:
        """The engine the settings ask for; `auto` takes MuseTalk when its weights are present."""
        return self._get("engine", self._load_engine)

    def _load_engine(self) -> Any:
        choice = self.settings.engine
        models_dir = Path(self.settings.models_dir)
        if choice == "auto":
            choice = "musetalk" if self._musetalk_ready(models_dir) else "classical"
        if choice == "musetalk":
            from models.musetalk.engine import MuseTalkEngine

            return MuseTalkEngine.load(models_dir, device=self._device())
        if choice == "classical":
            from models.classical_lipsync import ClassicalLipSync

            return ClassicalLipSync()
        raise ValueError(f"unknown lip-sync engine {choice!r}: use auto, classical or musetalk")

    def liveportrait(self) -> Any | None:
        """The LivePortrait animator when torch and its weights are present, else None."""
        if not _has_torch():
            return None
        from models.liveportrait import LivePortraitAnimator, liveportrait_available

        if "liveportrait" not in self._models and not liveportrait_available(self.settings.models_dir):
            return None
        # half: fp16 autocast on CUDA as the official flag_use_half_precision (a no-op on the CPU)
        retarget = self.settings.lip_retargeting == "on"
        marks = (lambda image, boxes: [f.landmarks for f in self.face_backend().landmarks(image, boxes)]) \
            if retarget else None
        return self._get("liveportrait", lambda: LivePortraitAnimator.load(
            self.settings.models_dir, device=self._device(), half=True, lip_retargeting=retarget, landmarks=marks))

    def codeformer(self) -> Any | None:
        """The CodeFormer face restorer when torch and its weights are present, else None."""
        if not _has_torch():
            return None
        from models.codeformer import FaceRestorer, codeformer_available

        if "codeformer" not in self._models and not codeformer_available(self.settings.models_dir):
            return None
        return self._get("codeformer", lambda: FaceRestorer.load(self.settings.models_dir, device=self._device()))

    def active_speaker(self) -> Any | None:
        """Light-ASD (MODELS_DIR/light-asd/pretrain_AVA_CVPR.model) when torch and it are present.

        The AVA checkpoint is used: on our clips it scores silence as not speaking, while
        the TalkSet fine-tune scores almost every face as speaking.
        """
        path = Path(self.settings.models_dir) / "light-asd" / "pretrain_AVA_CVPR.model"
        if not _has_torch() or ("asd" not in self._models and not path.is_file()):
            return None
        from models.light_asd import ActiveSpeakerModel

        return self._get("asd", lambda: ActiveSpeakerModel.load(path, device=self._device()))

    def provide(self, key: str, model: Any) -> None:
        """Install an already-loaded model (tests with small configs, embedding apps)."""
        with self._lock:
            self._models[key] = model

    def _device(self) -> str | None:
        return None if self.settings.device == "auto" else self.settings.device

    @staticmethod
    def _musetalk_ready(models_dir: Path) -> bool:
        """MuseTalk needs torch (the [neural] extra) and all its files in MODELS_DIR."""
        if not _has_torch() or importlib.util.find_spec("diffusers") is None:
            return False
        from models.musetalk.engine import missing_files

        return not missing_files(models_dir)

    def missing_weights(self) -> list[str]:
        """Weight files of the full stack absent from MODELS_DIR (relative paths)."""
        from models.manifest import MODELS

        root = Path(self.settings.models_dir)
        missing = []
        for model in MODELS:
            if model.extract_to:
                missing += [f"{model.extract_to}/{name}" for name in model.extracted
                            if not (root / model.extract_to / name).is_file()]
            else:
                missing += [f.path for f in model.files if not (root / f.path).is_file()]
        return missing

    def loaded(self, key: str) -> Any | None:
        return self._models.get(key)

    def errors(self) -> dict[str, str]:
        return dict(self._errors)


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


_shared: dict[tuple, ModelRegistry] = {}
_shared_lock = threading.Lock()


def shared_registry(settings: Settings) -> ModelRegistry:
    """One registry per distinct model configuration in this process."""
    key = (str(settings.models_dir), settings.face_backend, settings.engine, settings.device)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = ModelRegistry(settings)
        return _shared[key]
