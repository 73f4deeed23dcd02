"""The whole neural stack as tiny random models in the official layouts, for job tests."""
from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.tiny_models import write_tiny_musetalk
from models.codeformer import CodeFormer, save_codeformer
from models.liveportrait.loader import build_networks, save_liveportrait
from tests.test_codeformer import TINY as TINY_CODEFORMER
from tests.test_liveportrait import TINY as TINY_LIVEPORTRAIT


def write_tiny_stack(root: Path) -> Path:
    """MuseTalk, LivePortrait and CodeFormer under `root` (a MODELS_DIR); returns root.

    Their small configs are not the official ones: load LivePortrait and CodeFormer with
    TINY_LIVEPORTRAIT / TINY_CODEFORMER (MuseTalk's config file is written beside it)."""
    write_tiny_musetalk(root)
    torch.manual_seed(1)
    save_liveportrait(build_networks(TINY_LIVEPORTRAIT), root)
    net = CodeFormer(**TINY_CODEFORMER)
    with torch.no_grad():
        net.position_emb.normal_(0, 0.02)  # zero at init: the transformer would see no positions
    save_codeformer(net, root)
    return root
