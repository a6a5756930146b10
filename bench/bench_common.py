"""What the benchmark scripts share: paths, the architectures and modes they run."""
from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ARCHS = {"sd15": ("sd1", "SD1.5"), "sdxl": ("sdxl", "SDXL")}
MODES = {"weight_sum": 2, "add_difference": 3}
ALPHA = 0.5
GiB = 1 << 30


def sys_path() -> None:
    """Make `lib_merge` importable from a bench script run from anywhere."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
