"""CodeFormer (sczhou) face restoration with the official pre- and post-processing.

Modules: `arch` (the network, official key names), `loader` (strict loading of
codeformer.pth and the optional parsing_parsenet.pth), `align` (FFHQ alignment, fill,
grey detection), `parsing` (ParseNet and its paste mask), `paste` (the official
paste-back mask and blend), `restorer` (FaceRestorer: all of it on frames, batched).
"""
from .align import FFHQ_TEMPLATE_512, FILL_BGR, FILL_RGB, align_matrix
from .arch import CodeFormer
from .loader import (
    CHECKPOINT_KEY,
    CODEFORMER_FILE,
    PARSENET_FILE,
    codeformer_available,
    codeformer_path,
    load_codeformer,
    load_parsenet,
    parsenet_path,
    save_codeformer,
    save_parsenet,
)
from .parsing import ParseNet
from .paste import paste_face
from .restorer import FaceRestorer

__all__ = [
    "CHECKPOINT_KEY",
    "CODEFORMER_FILE",
    "FFHQ_TEMPLATE_512",
    "FILL_BGR",
    "FILL_RGB",
    "PARSENET_FILE",
    "CodeFormer",
    "FaceRestorer",
    "ParseNet",
    "align_matrix",
    "codeformer_available",
    "codeformer_path",
    "load_codeformer",
    "load_parsenet",
    "parsenet_path",
    "paste_face",
    "save_codeformer",
    "save_parsenet",
]
