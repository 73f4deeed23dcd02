"""Shared fixtures: the real sample media in ../shared/data next to the repository."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
SHARED_MODELS = ROOT.parent / "shared" / "models"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"sample media folder {DATA} is missing (it sits beside the repository)")
    return DATA
