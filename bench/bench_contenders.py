"""The contenders that run in child processes: the I/O floor, the naive load-everything merge, a bare torch import."""
from __future__ import annotations

import os

from bench_common import ALPHA, BETA

READ_BUF = 64 << 20  # the floor's reused read/write buffer

def _read_all(inputs: list[str]) -> None:
    buf = bytearray(READ_BUF)
    mv = memoryview(buf)
    for p in inputs:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(mv):
                pass


def child_floor(inputs: list[str], out: str | None, out_size: int) -> None:
    """The honest floor of a streaming merge (issue 12), literally `cat INPUTS >/dev/null & dd
    if=/dev/zero of=OUT bs=1M count=N conv=fsync; wait`: every input read WHILE one output of the
    output's size is written and fsynced (a merge fsyncs before its atomic rename)."""
    import subprocess
    if out is None:  # only warming the page cache
        _read_all(inputs)
        return
    mib, rest = divmod(out_size, 1 << 20)
    cat = subprocess.Popen(["cat", *inputs], stdout=subprocess.DEVNULL)
    subprocess.run(["dd", "if=/dev/zero", f"of={out}", "bs=1M", f"count={mib + (1 if rest else 0)}", "conv=fsync",
                    "status=none"], check=True)
    if cat.wait() != 0:
        raise SystemExit(f"cat {' '.join(inputs)} failed")


def child_naive(mode: str, inputs: list[str], out: str) -> None:
    import torch
    from safetensors.torch import load_file, save_file
    sds = [load_file(p) for p in inputs]
    a = sds[0]
    res = {}
    for k, ta in a.items():
        # like ours' defaults: non-float keys and the VAE stay A's
        if not ta.is_floating_point() or k.startswith("first_stage_model."):
            res[k] = ta
            continue
        fa = ta.float()
        fb = sds[1][k].float() if len(sds) > 1 else None
        fc = sds[2][k].float() if len(sds) > 2 else None
        if mode == "weight_sum":
            r = fa * (1 - ALPHA) + fb * ALPHA
        elif mode == "add_difference":
            r = fa + (fb - fc) * ALPHA
        elif mode == "triple_sum":
            r = fa * (1 - ALPHA - BETA) + fb * ALPHA + fc * BETA
        elif mode == "sum_twice":
            r = (fa * (1 - ALPHA) + fb * ALPHA) * (1 - BETA) + fc * BETA
        elif mode == "self":
            r = fa * 0.9
        else:
            raise SystemExit(f"naive: no formula for {mode}")
        res[k] = r.to(ta.dtype)
    save_file(res, out)
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def child_torch_import() -> None:
    import torch  # noqa: F401  # what Python + torch alone cost in RSS
    import safetensors.torch  # noqa: F401


# --------------------------------------------------------------------------- measuring
