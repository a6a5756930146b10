"""What the benchmark scripts share: paths, the architectures and modes they run."""
from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ARCHS = {"sd15": ("sd1", "SD1.5"), "sdxl": ("sdxl", "SDXL")}
# Issue 12/15's Flux row: `--arch flux --mode weight_sum first_merge` (2 × 11.9 GB fp8 Flux.1 dev
# transformers from bench_flux_inputs.py, 11.9 GB out: ~36 GB of disk). Not in the default run.
OPTIONAL_ARCHS = {"flux": ("flux", "Flux")}
ALPHA = 0.5
BETA = 0.25

# The benchmark's rows: inputs used, extra CLI arguments for ours, the naive formula (None: no naive
# contender for that row), and what is special about the row ("first": ours starts with an empty
# hash cache, so it hashes the inputs; "cold": the page cache is dropped before every contender).
ROWS: dict[str, dict] = {
    "weight_sum": {"n": 2, "args": [], "naive": "weight_sum"},
    "weight_sum_mbw": {"n": 2, "args": ["--alpha-blocks", "GRAD_V"], "naive": None},
    "add_difference": {"n": 3, "args": ["--mode", "add_difference"], "naive": "add_difference"},
    "add_difference_mbw": {"n": 3, "args": ["--mode", "add_difference", "--alpha-blocks", "GRAD_V"], "naive": None},
    "triple_sum": {"n": 3, "args": ["--mode", "triple_sum", "--beta", str(BETA)], "naive": "triple_sum"},
    "sum_twice": {"n": 3, "args": ["--mode", "sum_twice", "--beta", str(BETA)], "naive": "sum_twice"},
    "train_difference": {"n": 3, "args": ["--calc", "train_difference"], "naive": None},
    "cosine_a": {"n": 2, "args": ["--calc", "cosine_a"], "naive": None},
    "self": {"n": 1, "args": ["--calc", "self", "--alpha", "0.9"], "naive": "self"},
    "first_merge": {"n": 2, "args": [], "naive": None, "first": True},
    "cold": {"n": 2, "args": [], "naive": "weight_sum", "cold": True},
}
MODES = {name: row["n"] for name, row in ROWS.items()}
GiB = 1 << 30


def sys_path() -> None:
    """Make `lib_merge` importable from a bench script run from anywhere."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
