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


GEN_CHUNK = 1 << 22  # elements per random chunk when generating inputs (16 MiB float32)


def write_random(path: str, ents, meta, seed: int, fixed=None) -> None:
    """Write a checkpoint of random N(0, 0.05) values in each tensor's dtype, tensor by tensor in
    GEN_CHUNK chunks from one generator seeded with `seed`, through reused buffers; fsync'd (no dirty
    pages left to be written back during the timings) and renamed into place. `fixed(key, dtype, n)`:
    the tensor to write instead of random values (position ids, fp8 scales), or None for random."""
    sys_path()
    import math

    import torch

    from lib_merge.io.safetensors_io import DTYPES, SafetensorsWriter
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(seed)
    fbuf = torch.empty(GEN_CHUNK, dtype=torch.float32)
    outs: dict[str, torch.Tensor] = {}  # one chunk buffer per dtype written
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        w = SafetensorsWriter(f, ents, meta)
        for key, dtype, shape in ents:
            n = math.prod(shape)
            t = fixed(key, dtype, n) if fixed else None
            if t is not None:
                w.write(key, t)
                continue
            for s in range(0, n, GEN_CHUNK):
                c = min(GEN_CHUNK, n - s)
                out = outs.get(dtype)
                if out is None:
                    out = outs[dtype] = torch.empty(GEN_CHUNK, dtype=DTYPES[dtype])
                fbuf[:c].normal_(0.0, 0.05, generator=g)
                out[:c].copy_(fbuf[:c])
                w.write(key, out[:c])
        w.finish()
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
