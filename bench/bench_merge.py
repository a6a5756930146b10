#!/usr/bin/env python
"""Benchmark: BlockMerge against the I/O floor and a naive load-everything merge, on real-size models.

    python bench/bench_merge.py [--arch sd15 sdxl] [--mode weight_sum add_difference]
                                [--workdir DIR] [--keep] [--cold] [--repeat N] [--json FILE]

What it does, per architecture:

1. Writes three random-valued fp16 checkpoints A, B, C with every real key and shape, taken from
   the project's own tables (`lib_merge.arch.layouts.checkpoint(..., REAL)`), streamed tensor by
   tensor through `SafetensorsWriter` (header first) — never a whole model in memory. Files already
   in the work dir with the right size are reused.
2. Hashes the inputs once into a hash cache in the work dir (timed, reported on its own line), so
   that "ours" is timed without its one-time hashing.
3. Times, each in its own child process (so peak memory is per contender, Python start-up
   included), for weight_sum (A, B) and add_difference (A, B, C):
     floor  read every input fully (big sequential reads into one reused buffer), then write one
            output of the output's size and fsync it;
     naive  safetensors.torch.load_file every input, the formula per key in float32, cast to fp16,
            save_file (then fsync, like the real writers);
     ours   python -m lib_merge merge ... --quiet --overwrite (hash cache warm).
   Wall time from the parent; peak RSS (VmHWM) and peak RssAnon by polling /proc/PID/status
   (every --poll seconds, 50 ms default; wait4()'s ru_maxrss is not used: Linux counts the
   parent's pre-exec image in it):
   safetensors maps its inputs, and mapped file pages count in RSS although the kernel can drop
   them, so RssAnon is the memory that really has to fit.
4. Prints one Markdown table per architecture and mode, with a verdict against the targets, and
   deletes every output right after its contender (and the inputs at the end unless --keep).

Warm (default): the inputs are read once, untimed, right before every contender, so each starts
with them in the page cache as far as they fit in RAM (SDXL add_difference: 3 × 6.9 GB in plus
6.9 GB out do not all fit in 23 GiB). --cold: `sync; echo 3 > /proc/sys/vm/drop_caches` before
every contender (needs root; the script says so if it is not allowed).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

ARCHS = {"sd15": ("sd1", "SD1.5"), "sdxl": ("sdxl", "SDXL")}
MODES = {"weight_sum": 2, "add_difference": 3}
ALPHA = 0.5
GEN_CHUNK = 1 << 22  # elements per randn chunk when generating (16 MiB float32)
READ_BUF = 64 << 20  # the floor's reused read/write buffer
GiB = 1 << 30
TARGET_RATIO = 1.3  # issue 2 item 10: wall <= 1.3x the I/O floor
TARGET_RSS = 1e9  # ... and peak RSS under 1 GB
PERF_RATIO = 1.2  # shared/PERF.md: within 1.2x the floor, peak anon under 1 GiB
PERF_ANON = GiB


# --------------------------------------------------------------------------- inputs

def _sys_path() -> None:
    if REPO not in sys.path:
        sys.path.insert(0, REPO)


def entries_of(arch: str) -> list[tuple[str, str, tuple[int, ...]]]:
    """(key, dtype name, shape) of every tensor of a real-size checkpoint, in table order."""
    _sys_path()
    from lib_merge.arch import layouts
    shapes = layouts.checkpoint(ARCHS[arch][0], layouts.REAL)
    return [(k, "I64" if k.endswith("position_ids") else "F16", tuple(s)) for k, s in shapes.items()]


def gen_metadata(arch: str, seed: int) -> dict[str, str]:
    return {"format": "pt", "blockmerge_bench": f"random fp16 {arch} seed {seed}"}


def expected_size(arch: str, seed: int) -> int:
    _sys_path()
    from lib_merge.io.safetensors_io import header_bytes, itemsize
    ents = entries_of(arch)
    head, _ = header_bytes(ents, gen_metadata(arch, seed))
    return len(head) + sum(math.prod(s) * itemsize(d) for _, d, s in ents)


def generate(arch: str, seed: int, path: str) -> None:
    """Write one random checkpoint, tensor by tensor, with two reused chunk buffers."""
    _sys_path()
    import torch
    from lib_merge.io.safetensors_io import SafetensorsWriter
    torch.set_num_threads(1)
    ents = entries_of(arch)
    g = torch.Generator().manual_seed(seed)
    fbuf = torch.empty(GEN_CHUNK, dtype=torch.float32)
    hbuf = torch.empty(GEN_CHUNK, dtype=torch.float16)
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        w = SafetensorsWriter(f, ents, gen_metadata(arch, seed))
        for key, dtype, shape in ents:
            n = math.prod(shape)
            if dtype == "I64":  # position_ids: 0..n-1, as in real checkpoints
                w.write(key, torch.arange(n, dtype=torch.int64))
                continue
            for s in range(0, n, GEN_CHUNK):
                c = min(GEN_CHUNK, n - s)
                fbuf[:c].normal_(0.0, 0.05, generator=g)
                hbuf[:c].copy_(fbuf[:c])
                w.write(key, hbuf[:c])
        w.finish()
        f.flush()
        os.fsync(f.fileno())  # no dirty pages left to be written back during the timings
    os.replace(tmp, path)


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
            p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", "gen",
                                  "--gen-arch", arch, "--gen-seed", str(seed), path])
            running.append((p, path))
        p, path = running.pop(0)
        if p.wait() != 0:
            sys.exit(f"generating {path} failed (exit {p.returncode})")
    return time.perf_counter() - t0, [os.path.basename(p) for _, p in todo]


# --------------------------------------------------------------------------- contenders (children)

def child_floor(inputs: list[str], out: str | None, out_size: int) -> None:
    buf = bytearray(READ_BUF)
    mv = memoryview(buf)
    for p in inputs:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(mv):
                pass
    if out is None:  # only warming the page cache
        return
    with open(out, "wb", buffering=0) as f:
        left = out_size
        while left:
            n = f.write(mv[:min(left, READ_BUF)])
            left -= n
        os.fsync(f.fileno())


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
        fa, fb = ta.float(), sds[1][k].float()
        if mode == "weight_sum":
            r = fa * (1 - ALPHA) + fb * ALPHA
        else:
            r = fa + (fb - sds[2][k].float()) * ALPHA
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

def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[k] = int(v.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return out


def run_measured(argv: list[str], poll: float, env: dict | None = None) -> dict:
    """Run one contender; wall seconds, peak RSS (wait4 rusage of this child), peak RssAnon (polled)."""
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # drain the pipes on threads so a chatty child never blocks
    import threading
    chunks: dict[str, list[bytes]] = {"out": [], "err": []}

    def drain(stream, name):
        for line in stream:
            chunks[name].append(line)
    ts = [threading.Thread(target=drain, args=(p.stdout, "out"), daemon=True),
          threading.Thread(target=drain, args=(p.stderr, "err"), daemon=True)]
    for t in ts:
        t.start()
    peak = {"VmRSS": 0, "VmHWM": 0, "RssAnon": 0, "RssFile": 0}
    samples = 0
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        st = _status(p.pid)
        if st:
            samples += 1
            for k in peak:
                peak[k] = max(peak[k], st.get(k, 0))
        time.sleep(poll)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, tell Popen
    for t in ts:
        t.join()
    # Not ru.ru_maxrss: Linux folds the pre-exec image (a vfork/fork of this parent, which has
    # torch loaded) into the child's maxrss. Popen returns only after the exec, so every sample
    # above is of the contender's own address space; VmHWM is its high-water mark up to the last
    # sample (at most one poll period before exit).
    rss = max(peak["VmHWM"], peak["VmRSS"])
    return {"wall": wall, "rss": rss, "anon": peak["RssAnon"], "file_rss": peak["RssFile"],
            "cpu": ru.ru_utime + ru.ru_stime, "user": ru.ru_utime, "sys": ru.ru_stime,
            "minflt": ru.ru_minflt, "majflt": ru.ru_majflt,
            "load": max(load0, os.getloadavg()[0]),
            "ru_maxrss_incl_parent": ru.ru_maxrss * 1024, "samples": samples, "rc": p.returncode,
            "stderr": b"".join(chunks["err"]).decode(errors="replace")[-2000:]}


def drop_caches() -> str | None:
    """None if the page cache was dropped, else why not."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return None
    except OSError as e:
        return f"cannot drop the page cache ({e.strerror}); cold runs are not possible here"


def prehash(inputs: list[str], cache_dir: str) -> float:
    """Fill a fresh hash cache for the inputs; the seconds it took (ours' one-time cost)."""
    _sys_path()
    from lib_merge.io.hashing import HashCache
    path = os.path.join(cache_dir, "hashes.json")
    if os.path.exists(path):
        os.remove(path)  # measure the real cost every run
    cache = HashCache(path)
    t0 = time.perf_counter()
    for p in inputs:
        cache.sha256(p)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- the run

def contender_argv(name: str, mode: str, inputs: list[str], out: str, out_size: int) -> list[str]:
    me = os.path.abspath(__file__)
    if name == "warm":
        return [sys.executable, me, "--child", "floor", *inputs]
    if name == "floor":
        return [sys.executable, me, "--child", "floor", "--out-size", str(out_size), "-o", out, *inputs]
    if name == "naive":
        return [sys.executable, me, "--child", "naive", "--child-mode", mode, "-o", out, *inputs]
    if name == "ours":
        return [sys.executable, "-m", "lib_merge", "merge", *inputs, "-o", out, "--mode", mode,
                "--alpha", str(ALPHA), "--quiet", "--overwrite"]
    if name == "torch":
        return [sys.executable, me, "--child", "torch"]
    raise ValueError(name)


LABELS = {"floor": "I/O floor (read all inputs, write + fsync one output)",
          "naive": "naive (load_file all, fp32 math per key, save_file)",
          "ours": "ours (`python -m lib_merge merge`)",
          "torch": "baseline: python + import torch, safetensors"}


def _rm(path: str) -> None:
    for p in (path,):
        if os.path.exists(p):
            os.remove(p)
    folder, name = os.path.split(path)
    for leftover in os.listdir(folder):  # an interrupted atomic write's temp file
        if leftover.startswith(f".{name[:60]}.") and leftover.endswith(".partial"):
            os.remove(os.path.join(folder, leftover))


def bench_one(arch: str, mode: str, workdir: str, args, env: dict, cold_err: str | None) -> dict:
    inputs = input_paths(workdir, arch)[:MODES[mode]]
    out = os.path.join(workdir, f"{arch}_{mode}_out.safetensors")
    out_size = os.path.getsize(inputs[0])
    cold = args.cold and cold_err is None
    names = ["floor", "naive", "ours"]
    if args.skip:
        names = [n for n in names if n not in args.skip]
    results: dict[str, list[dict]] = {n: [] for n in names}
    for rep in range(args.repeat):
        for n in names:
            if cold:
                drop_caches()
            else:
                # re-read the inputs (untimed) before every contender: the one before may have
                # pushed them out of the page cache (naive's gigabytes of anon memory do)
                run_measured(contender_argv("warm", mode, inputs, out, out_size), args.poll)
            r = run_measured(contender_argv(n, mode, inputs, out, out_size), args.poll,
                             env if n == "ours" else None)
            _rm(out)
            r["rep"] = rep
            results[n].append(r)
            status = f"{r['wall']:.1f} s" if r["rc"] == 0 else f"FAILED (exit {r['rc']})"
            print(f"  [{ARCHS[arch][1]} {mode}] {n}: {status}, cpu {r['cpu']:.1f} s, load {r['load']:.1f}, peak RSS {r['rss'] / GiB:.2f} GiB, "
                  f"anon {r['anon'] / GiB:.2f} GiB", file=sys.stderr, flush=True)
            if r["rc"] != 0:
                print("    " + r["stderr"].strip().replace("\n", "\n    "), file=sys.stderr)
    best = {n: min(rs, key=lambda r: (r["rc"] != 0, r["wall"])) for n, rs in results.items() if rs}
    return {"arch": arch, "mode": mode, "cold": cold, "inputs": [os.path.getsize(p) for p in inputs],
            "out_size": out_size, "runs": results, "best": best}


def fmt_table(res: dict, torch_base: dict | None) -> str:
    arch, mode = res["arch"], res["mode"]
    n_in = len(res["inputs"])
    lines = [f"### {ARCHS[arch][1]} · {mode} α={ALPHA} ({n_in} × {res['inputs'][0] / 1e9:.2f} GB in, "
             f"{res['out_size'] / 1e9:.2f} GB out) · {'cold' if res['cold'] else 'warm'} page cache",
             "", "| contender | wall s | × floor | CPU s (user+sys) | peak RSS | peak anon |",
             "|---|---:|---:|---:|---:|---:|"]
    best = res["best"]
    floor = best.get("floor")
    fw = floor["wall"] if floor and floor["rc"] == 0 else None
    for n in ("floor", "naive", "ours"):
        r = best.get(n)
        if r is None:
            continue
        if r["rc"] != 0:
            lines.append(f"| {LABELS[n]} | FAILED (exit {r['rc']}) | – | – | – | – |")
            continue
        ratio = f"{r['wall'] / fw:.2f}" if fw else "–"
        lines.append(f"| {LABELS[n]} | {r['wall']:.1f} | {ratio} | {r['cpu']:.1f} | {r['rss'] / GiB:.2f} GiB | "
                     f"{r['anon'] / GiB:.2f} GiB |")
    if torch_base:
        lines.append(f"| {LABELS['torch']} | {torch_base['wall']:.1f} | – | {torch_base['cpu']:.1f} | "
                     f"{torch_base['rss'] / GiB:.2f} GiB | "
                     f"{torch_base['anon'] / GiB:.2f} GiB |")
    ours = best.get("ours")
    loads = [r["load"] for rs in res["runs"].values() for r in rs]
    if loads and max(loads) > (os.cpu_count() or 1):
        lines.append("")
        lines.append(f"Note: load average reached {max(loads):.1f} on {os.cpu_count()} CPUs during these runs "
                     "(other work on the machine): wall times are inflated; CPU seconds are steadier.")
    lines.append("")
    if ours is None:
        lines.append("Verdict: ours not run.")
    elif ours["rc"] != 0:
        lines.append(f"Verdict: FAIL — ours exited {ours['rc']}: {ours['stderr'].strip().splitlines()[-1:]}")
    elif fw:
        ratio = ours["wall"] / fw
        ok_t = ratio <= TARGET_RATIO
        ok_m = ours["rss"] < TARGET_RSS
        ok_p = ratio <= PERF_RATIO and ours["anon"] < PERF_ANON
        lines.append(
            f"Verdict: {'PASS' if ok_t and ok_m else 'FAIL'} — ours {ratio:.2f}× floor "
            f"(target ≤ {TARGET_RATIO}×: {'ok' if ok_t else 'miss'}), peak RSS {ours['rss'] / 1e9:.2f} GB "
            f"(target < 1 GB: {'ok' if ok_m else 'miss'}); PERF.md bar (≤ {PERF_RATIO}×, anon "
            f"{ours['anon'] / GiB:.2f} GiB < 1 GiB): {'met' if ok_p else 'not met'}.")
        naive = best.get("naive")
        if naive and naive["rc"] == 0:
            lines[-1] += f" Ours is {naive['wall'] / ours['wall']:.2f}× faster than naive."
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", nargs="+", choices=tuple(ARCHS), default=list(ARCHS))
    ap.add_argument("--mode", nargs="+", choices=tuple(MODES), default=list(MODES))
    ap.add_argument("--workdir", default=os.path.join(HERE, "out"))
    ap.add_argument("--keep", action="store_true", help="keep the generated inputs")
    ap.add_argument("--cold", action="store_true", help="drop the page cache before every contender")
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender; the fastest is reported")
    ap.add_argument("--skip", nargs="*", choices=("floor", "naive", "ours"), default=[],
                    help="contenders to leave out (the floor is needed for ratios)")
    ap.add_argument("--poll", type=float, default=0.05, help="RssAnon sampling period, seconds")
    ap.add_argument("--jobs", type=int, default=2, help="inputs generated in parallel")
    ap.add_argument("--json", metavar="FILE", help="save every measurement as JSON")
    # internal: one contender in a child process
    ap.add_argument("--child", choices=("floor", "naive", "torch", "gen"), help=argparse.SUPPRESS)
    ap.add_argument("--child-mode", help=argparse.SUPPRESS)
    ap.add_argument("--out-size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--gen-arch", help=argparse.SUPPRESS)
    ap.add_argument("--gen-seed", type=int, help=argparse.SUPPRESS)
    ap.add_argument("-o", dest="out", help=argparse.SUPPRESS)
    ap.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child == "floor":
        child_floor(args.files, args.out, args.out_size)
        return 0
    if args.child == "naive":
        child_naive(args.child_mode, args.files, args.out)
        return 0
    if args.child == "torch":
        child_torch_import()
        return 0
    if args.child == "gen":
        generate(args.gen_arch, args.gen_seed, args.files[0])
        return 0

    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    cache_dir = os.path.join(workdir, "hashcache")
    os.makedirs(cache_dir, exist_ok=True)
    env = dict(os.environ, BLOCKMERGE_CACHE_DIR=cache_dir,
               PYTHONPATH=REPO + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""))
    cold_err = drop_caches() if args.cold else None
    report: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "ram_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB},
                    "cold_requested": args.cold, "cold_error": cold_err, "archs": {}, "results": []}
    try:
        import torch
        report["machine"]["torch"] = torch.__version__
    except ImportError:
        pass
    md: list[str] = []
    if args.cold and cold_err:
        md.append(f"> {cold_err}: the numbers below are warm.\n")
    elif not args.cold:
        md.append("> warm page cache (inputs read once, untimed, before every contender). Use --cold to drop caches before every "
                  "contender" + (" (allowed here)." if drop_caches_allowed() else " (NOT allowed here).") + "\n")
    torch_base = run_measured(contender_argv("torch", "", [], "", 0), args.poll)
    for arch in args.arch:
        t_gen, made = ensure_inputs(workdir, arch, args.jobs)
        inputs = input_paths(workdir, arch)[:max(MODES[m] for m in args.mode)]
        info = {"generated": made, "generate_s": t_gen, "file_bytes": os.path.getsize(inputs[0])}
        info["hash_s"] = prehash(inputs, cache_dir)
        report["archs"][arch] = info
        gen_line = (f"generated {', '.join(made)} in {t_gen:.0f} s" if made else "inputs reused from the work dir")
        md.append(f"## {ARCHS[arch][1]} — {len(inputs)} inputs × {info['file_bytes'] / 1e9:.2f} GB; {gen_line}\n")
        md.append(f"One-time hashing (sha256 of {len(inputs)} inputs into ours' hash cache, not in ours' time): "
                  f"{info['hash_s']:.1f} s ({len(inputs) * info['file_bytes'] / 1e9 / max(info['hash_s'], 1e-9):.2f} GB/s)\n")
        for mode in args.mode:
            res = bench_one(arch, mode, workdir, args, env, cold_err)
            report["results"].append(res)
            md.append(fmt_table(res, torch_base) + "\n")
        if not args.keep:
            for p in input_paths(workdir, arch):
                if os.path.exists(p):
                    os.remove(p)
    text = "\n".join(md)
    print(text)
    if args.json:
        report["torch_baseline"] = torch_base
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    return 0


def drop_caches_allowed() -> bool:
    try:
        with open("/proc/sys/vm/drop_caches", "w"):
            pass
        return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
