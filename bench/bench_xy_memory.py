#!/usr/bin/env python
"""Memory over a merge XY plot: does RSS stay flat across 25 merges of real-size SD1.5 models?

    python bench/bench_xy_memory.py [--size 5] [--workdir bench/out] [--strategy reuse|replace|new] [--gc]
    python bench/bench_xy_memory.py --compare      # each strategy in its own process, one table each

What it does:

1. Inputs: two random fp16 SD1.5 checkpoints with every real key and shape
   (`lib_merge.arch.layouts.checkpoint("sd1", layouts.REAL)`). `sd15_A` / `sd15_B.safetensors` in the
   work dir (what bench/bench_merge.py leaves there) are reused when their headers have exactly those
   keys and shapes; otherwise `xy_sd15_A` / `xy_sd15_B.safetensors` are written, tensor by tensor,
   through `SafetensorsWriter`, with two reused chunk buffers (never a whole model in memory).
2. A size x size plot (default 5 x 5 = 25 cells, every cell its own merge): X = alpha, Y = pinpoint
   element (a different block set to 0 per row), run by the tab's own composition
   (`lib_merge.ui.xy_merge.run_on_host`: recipes from the form, every value checked first, one merge
   per merge key, load, render, grid, restore, grid saved in a temporary data folder).
3. The host is fake but holds memory like a real one: `load_state_dict` copies the merged weights
   into preallocated "model" tensors (an in-place load) and keeps a reference to the dict it was
   given, as a model object would until the next load; `generate` returns a 64 x 64 image.
4. After every cell (in `generate`) it samples this process' VmRSS and RssAnon (/proc/self/status),
   prints the series and the growth from cell 2 to the last cell (cell 1 allocates the model and
   the merge buffer once). Target: growth below ~100 MB.

Strategies (what the merge writes into), to show why the runner does what it does:
  reuse    the runner's own: one ReusingStateDict for the whole plot, each tensor refilled in place;
  replace  one plain dict for the whole plot (each merge replaces the previous merge's tensors);
  new      a new dict per merge (the host's reference keeps the previous one alive during the next).
--gc runs gc.collect() after every cell (reference counting already frees tensors; this shows it).
"""
from __future__ import annotations

import argparse
import gc
import math
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

GEN_CHUNK = 1 << 22  # elements per random chunk when writing inputs
MB = 1 << 20
TARGET_MB = 100
PIN_BLOCKS = ("IN04", "IN07", "M00", "OUT03", "OUT08", "IN01", "IN10", "OUT05", "OUT11", "IN05")


def status() -> dict[str, int]:
    """VmRSS, RssAnon, VmHWM of this process in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


# --- inputs ------------------------------------------------------------------------------------------

def real_entries() -> list[tuple[str, str, tuple[int, ...]]]:
    from lib_merge.arch import layouts
    shapes = layouts.checkpoint("sd1", layouts.REAL)
    return [(k, "I64" if k.endswith("position_ids") else "F16", tuple(s)) for k, s in shapes.items()]


def usable(path: str, entries: list) -> bool:
    """An existing file with exactly the real SD1.5 keys and shapes."""
    if not os.path.isfile(path):
        return False
    from lib_merge.io.safetensors_io import read_header
    try:
        tensors, _ = read_header(path)
    except Exception:  # noqa: BLE001 - a partial or foreign file: write our own
        return False
    return {k: tuple(v.shape) for k, v in tensors.items()} == {k: s for k, _, s in entries}


def write_input(path: str, entries: list, seed: int) -> None:
    import torch
    from lib_merge.io.safetensors_io import SafetensorsWriter
    g = torch.Generator().manual_seed(seed)
    fbuf = torch.empty(GEN_CHUNK, dtype=torch.float32)
    hbuf = torch.empty(GEN_CHUNK, dtype=torch.float16)
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        w = SafetensorsWriter(f, entries, {"format": "pt", "blockmerge_bench": f"random fp16 sd1 seed {seed}"})
        for key, dtype, shape in entries:
            n = math.prod(shape)
            if dtype == "I64":
                w.write(key, torch.arange(n, dtype=torch.int64))
                continue
            for s in range(0, n, GEN_CHUNK):
                c = min(GEN_CHUNK, n - s)
                fbuf[:c].normal_(0.0, 0.05, generator=g)
                hbuf[:c].copy_(fbuf[:c])
                w.write(key, hbuf[:c])
        w.finish()
    os.replace(tmp, path)


def inputs(workdir: str) -> tuple[str, str, str]:
    """(A, B, what happened)."""
    entries = real_entries()
    reused = [os.path.join(workdir, f"sd15_{m}.safetensors") for m in "AB"]
    if all(usable(p, entries) for p in reused):
        return reused[0], reused[1], f"reused {', '.join(os.path.basename(p) for p in reused)} from {workdir}"
    os.makedirs(workdir, exist_ok=True)
    own = [os.path.join(workdir, f"xy_sd15_{m}.safetensors") for m in "AB"]
    t0 = time.perf_counter()
    for seed, p in enumerate(own, 1):
        if not usable(p, entries):
            write_input(p, entries, seed)
    return own[0], own[1], f"wrote {', '.join(os.path.basename(p) for p in own)} in {time.perf_counter() - t0:.0f} s"


# --- the plot ----------------------------------------------------------------------------------------

class BenchHost:
    """A webui-like host: in-place loads into preallocated tensors, a reference to the last dict kept."""
    name = "bench"
    can_load = True
    can_generate = True

    def __init__(self, folder: str, names: dict[str, str], on_cell):
        self.folder, self.names, self.on_cell = folder, names, on_cell
        self.model = None
        self.last_dict = None  # what a model object would still reference until the next load
        self.loads = 0

    def checkpoints(self) -> list[str]:
        return sorted(self.names)

    def checkpoint_path(self, name: str) -> str:
        return self.names[name]

    def output_dir(self) -> str:
        return self.folder

    def load_state_dict(self, sd, base_name: str, label: str) -> str:
        import torch
        with torch.no_grad():
            if self.model is None:
                self.model = {k: torch.empty_like(v) for k, v in sd.items()}
            for k, v in sd.items():
                self.model[k].copy_(v)
        self.last_dict = sd
        self.loads += 1
        return "loaded in place"

    def restore(self) -> str:
        return "restored"

    def generate(self, settings, progress=None):
        from PIL import Image
        from lib_merge.ui.host import Generated
        level = int(abs(float(self.model["model.diffusion_model.out.2.weight"].float().mean())) * 1e4) % 256
        img = Image.new("RGB", (64, 64), (level, settings.seed % 256, 128))
        self.on_cell()
        return Generated([img], "")


def run(args) -> int:
    import torch
    from lib_merge.engine import merge as engine_merge
    from lib_merge.ui.form import FormValues
    from lib_merge.ui.host import GenSettings
    from lib_merge.ui.state import TabState
    from lib_merge.ui.xy_merge import PlotRequest, run_on_host

    torch.set_num_threads(1)
    a, b, how = inputs(args.workdir)
    size = args.size
    if size > len(PIN_BLOCKS):
        raise SystemExit(f"--size at most {len(PIN_BLOCKS)}")
    alphas = ", ".join(f"{0.1 + 0.8 * i / max(size - 1, 1):.2f}" for i in range(size))
    pins = "\n".join(f"{blk}::0" for blk in PIN_BLOCKS[:size])
    samples: list[tuple[float, dict[str, int]]] = []
    t0 = time.perf_counter()

    def on_cell() -> None:
        if args.gc:
            gc.collect()
        samples.append((time.perf_counter() - t0, status()))

    plain: dict = {}

    def merge(recipe, output=None, **kw):
        if args.strategy == "replace":
            output = plain
        elif args.strategy == "new":
            output = None
        return engine_merge(recipe, output, **kw)

    with tempfile.TemporaryDirectory(prefix="bench_xy_") as tmp:
        host = BenchHost(tmp, {"A.safetensors": a, "B.safetensors": b}, on_cell)
        state = TabState(data_dir=os.path.join(tmp, "data"))
        form = FormValues(model_a="A.safetensors", model_b="B.safetensors", alpha=0.5)
        req = PlotRequest(form, (("alpha", alphas), ("pinpoint_element", pins), ("none", "")),
                          GenSettings(prompt="bench", seed=1234))
        before = status()
        result = run_on_host(host, state, req, merge=merge)
    print(f"# merge XY plot memory — {size}x{size} = {size * size} cells, strategy {args.strategy}"
          f"{' + gc.collect()' if args.gc else ''}")
    print(f"inputs: {how}")
    print(f"plot: {result.merges} merges, {result.renders} renders, {result.seconds:.0f} s; host loads: {host.loads}; "
          f"RSS before the plot: {before['VmRSS'] / MB:.0f} MB (RssAnon {before['RssAnon'] / MB:.0f} MB)")
    print()
    print("| cell | t (s) | VmRSS (MB) | RssAnon (MB) |")
    print("|---:|---:|---:|---:|")
    for i, (t, s) in enumerate(samples, 1):
        print(f"| {i} | {t:.0f} | {s['VmRSS'] / MB:.0f} | {s['RssAnon'] / MB:.0f} |")
    if len(samples) < 2:
        print("\nfewer than 2 cells: no growth to report")
        return 1
    first, last = samples[1][1], samples[-1][1]
    g_rss = (last["VmRSS"] - first["VmRSS"]) / MB
    g_anon = (last["RssAnon"] - first["RssAnon"]) / MB
    anon = [s["RssAnon"] / MB for _, s in samples[1:]]
    peak = max(s["VmHWM"] for _, s in samples) / MB
    ok = max(g_rss, g_anon) < TARGET_MB
    print()
    print(f"growth cell 2 -> cell {len(samples)}: VmRSS {g_rss:+.0f} MB, RssAnon {g_anon:+.0f} MB; "
          f"peak (VmHWM) {peak:.0f} MB")
    print(f"RssAnon over cells 2..{len(samples)}: {min(anon):.0f}..{max(anon):.0f} MB "
          f"(band {max(anon) - min(anon):.0f} MB), trend {slope(anon):+.1f} MB per cell (least squares)")
    print(f"verdict: {'PASS' if ok else 'FAIL'} (target: growth < {TARGET_MB} MB)")
    return 0 if ok else 2


def slope(ys: list[float]) -> float:
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((i - mx) * (y - my) for i, y in enumerate(ys)) / sum((i - mx) ** 2 for i in range(n))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=5, help="cells per axis (size x size plot; default 5)")
    ap.add_argument("--workdir", default=os.path.join(HERE, "out"), help="where the inputs are (default bench/out)")
    ap.add_argument("--strategy", choices=("reuse", "replace", "new"), default="reuse")
    ap.add_argument("--gc", action="store_true", help="gc.collect() after every cell")
    ap.add_argument("--compare", action="store_true", help="run reuse, replace and new, each in its own process")
    args = ap.parse_args(argv)
    if not args.compare:
        return run(args)
    worst = 0
    for strategy in ("reuse", "replace", "new"):
        cmd = [sys.executable, os.path.abspath(__file__), "--size", str(args.size), "--workdir", args.workdir,
               "--strategy", strategy] + (["--gc"] if args.gc else [])
        print(f"$ {' '.join(cmd[1:])}", flush=True)
        worst = max(worst, subprocess.run(cmd).returncode)
        print(flush=True)
    return worst


if __name__ == "__main__":
    sys.exit(main())
