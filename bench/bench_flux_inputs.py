"""Random fp8 (or bf16) Flux.1 dev transformers with every real key and shape, for the Flux bench row.

    python bench/bench_flux_inputs.py WORKDIR                       # the real size: 19 + 38 blocks, 2 x 11.9 GB fp8
    python bench/bench_flux_inputs.py WORKDIR --double 1 --single 2 # real widths, fewer blocks (~0.6 GB each)
    python bench/bench_flux_inputs.py WORKDIR --dtype bf16 --names ABC

Keys and shapes come from lib_merge.arch.flux_layouts (BFL's transformer-only layout, hidden 3072);
every tensor is the real size, including the largest (`single_blocks.N.linear1`, 21504 x 3072 = 66 M
elements), so a run with fewer blocks still measures the per-tensor peak memory of a full-size merge.
Tensors are streamed in chunks (two reused buffers), written with fsync, and reused when a file of
the right size is already there. Then, e.g.:

    /usr/bin/time -v python -m lib_merge merge WORKDIR/flux_A.safetensors WORKDIR/flux_B.safetensors \\
        -o WORKDIR/out.safetensors --alpha 0.5 --overwrite
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time

from bench_common import sys_path, write_random

DTYPES = {"fp8": "F8_E4M3", "bf16": "BF16"}


def entries(n_double: int, n_single: int, dtype: str, scaled: bool = False) -> list[tuple[str, str, tuple[int, ...]]]:
    """With `scaled` (fp8 only): Comfy's legacy scaled layout, a `scale_weight` scalar after every block
    Linear weight and the `scaled_fp8` marker (lib_merge/merge/scaled.py)."""
    sys_path()
    from dataclasses import replace

    from lib_merge.arch.flux_layouts import FLUX_REAL, transformer
    dims = replace(FLUX_REAL, n_double=n_double, n_single=n_single)
    out = []
    for k, s in transformer(dims, "dev").items():
        out.append((k, DTYPES[dtype], tuple(s)))
        if scaled and k.endswith(".weight") and len(s) == 2 and k.startswith(("double_blocks.", "single_blocks.")):
            out.append((k[:-len("weight")] + "scale_weight", "F32", ()))
    if scaled:
        out.append(("scaled_fp8", "F8_E4M3", (0,)))
    return out


def size_of(ents, meta) -> int:
    from lib_merge.io.safetensors_io import header_bytes, itemsize
    head, _ = header_bytes(ents, meta)
    return len(head) + sum(math.prod(s) * itemsize(d) for _, d, s in ents)


def generate(path: str, ents, meta, seed: int) -> None:
    """Write one random transformer (bench_common.write_random). A per-tensor scale (F32) is 0.002:
    fp8 values of std 0.05 / 0.002 stand for weights of std ~1e-4."""
    import torch

    def scales(key: str, dtype: str, n: int):
        return torch.full((1,), 0.002, dtype=torch.float32) if dtype == "F32" else None
    write_random(path, ents, meta, seed, scales)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workdir")
    ap.add_argument("--double", type=int, default=19)
    ap.add_argument("--single", type=int, default=38)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp8")
    ap.add_argument("--names", default="AB", help="one file per letter (A, B, C for add difference)")
    ap.add_argument("--scaled", action="store_true", help="fp8 scaled (Comfy's legacy layout)")
    a = ap.parse_args(argv)
    if a.scaled and a.dtype != "fp8":
        sys.exit("--scaled needs --dtype fp8")
    sys_path()
    os.makedirs(a.workdir, exist_ok=True)
    ents = entries(a.double, a.single, a.dtype, a.scaled)
    for seed, name in enumerate(a.names, 1):
        path = os.path.join(a.workdir, f"flux_{'scaled_' if a.scaled else ''}{name}.safetensors")
        meta = {"format": "pt", "blockmerge_bench": f"random {a.dtype} flux dev {a.double}x{a.single} seed {seed}"}
        want = size_of(ents, meta)
        if os.path.exists(path) and os.path.getsize(path) == want:
            print(f"{path}: reused ({want / 1e9:.2f} GB)")
            continue
        if want > shutil.disk_usage(a.workdir).free:
            sys.exit(f"not enough disk in {a.workdir}: {path} needs {want / 1e9:.1f} GB")
        t0 = time.perf_counter()
        generate(path, ents, meta, seed)
        print(f"{path}: {want / 1e9:.2f} GB in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
