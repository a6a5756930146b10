"""Real-size random fp16 checkpoints with every real key and shape (from lib_merge.arch.layouts),
streamed tensor by tensor, reused when already in the work dir with the right size."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time

from bench_common import ARCHS, HERE, sys_path, write_random

def entries_of(arch: str) -> list[tuple[str, str, tuple[int, ...]]]:
    """(key, dtype name, shape) of every tensor of a real-size checkpoint, in table order."""
    if arch == "flux":  # Flux.1 dev transformer-only, fp8 (2 x 11.9 GB): what people merge (NEO_FLUX.md)
        from bench_flux_inputs import entries
        return entries(19, 38, "fp8")
    sys_path()
    from lib_merge.arch import layouts
    from bench_common import OPTIONAL_ARCHS
    shapes = layouts.checkpoint({**ARCHS, **OPTIONAL_ARCHS}[arch][0], layouts.REAL)
    return [(k, "I64" if k.endswith("position_ids") else "F16", tuple(s)) for k, s in shapes.items()]


def gen_metadata(arch: str, seed: int) -> dict[str, str]:
    if arch == "flux":
        return {"format": "pt", "blockmerge_bench": f"random fp8 flux dev 19x38 seed {seed}"}
    return {"format": "pt", "blockmerge_bench": f"random fp16 {arch} seed {seed}"}


def expected_size(arch: str, seed: int) -> int:
    sys_path()
    from lib_merge.io.safetensors_io import header_bytes, itemsize
    ents = entries_of(arch)
    head, _ = header_bytes(ents, gen_metadata(arch, seed))
    return len(head) + sum(math.prod(s) * itemsize(d) for _, d, s in ents)


def generate(arch: str, seed: int, path: str) -> None:
    """Write one random fp16 checkpoint (bench_common.write_random; position ids 0..n-1)."""
    if arch == "flux":
        from bench_flux_inputs import generate as generate_flux
        generate_flux(path, entries_of(arch), gen_metadata(arch, seed), seed)
        return
    import torch

    def position_ids(key: str, dtype: str, n: int):  # 0..n-1, as in real checkpoints
        return torch.arange(n, dtype=torch.int64) if dtype == "I64" else None
    write_random(path, entries_of(arch), gen_metadata(arch, seed), seed, position_ids)


def input_paths(workdir: str, arch: str, names: str = "ABC") -> list[str]:
    return [os.path.join(workdir, f"{arch}_{m}.safetensors") for m in names]


def ensure_inputs(workdir: str, arch: str, jobs: int, names: str = "ABC") -> tuple[float, list[str]]:
    """Generate what is missing (up to `jobs` files at once); returns (seconds, generated names)."""
    todo = []
    for seed, path in enumerate(input_paths(workdir, arch, names), 1):
        want = expected_size(arch, seed)
        if os.path.exists(path) and os.path.getsize(path) == want:
            continue
        todo.append((seed, path))
    if not todo:
        return 0.0, []
    free = shutil.disk_usage(workdir).free
    need = sum(expected_size(arch, s) for s, _ in todo)
    if need > free:
        sys.exit(f"not enough disk in {workdir}: need {need / 1e9:.1f} GB for inputs, {free / 1e9:.1f} GB free")
    t0 = time.perf_counter()
    pending = list(todo)
    running: list[tuple[subprocess.Popen, str]] = []
    while pending or running:
        while pending and len(running) < jobs:
            seed, path = pending.pop(0)
            p = subprocess.Popen([sys.executable, os.path.join(HERE, "bench_merge.py"), "--child", "gen",
                                  "--gen-arch", arch, "--gen-seed", str(seed), path])
            running.append((p, path))
        p, path = running.pop(0)
        if p.wait() != 0:
            sys.exit(f"generating {path} failed (exit {p.returncode})")
    return time.perf_counter() - t0, [os.path.basename(p) for _, p in todo]
