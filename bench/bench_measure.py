"""Measuring a child process: wall time, peak RSS and peak RssAnon (polled from /proc), page-cache drops, hashing."""
from __future__ import annotations

import os
import subprocess
import time

from bench_common import REPO, sys_path

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
            "stderr": b"".join(chunks["err"]).decode(errors="replace")[-2000:],
            "stdout": b"".join(chunks["out"]).decode(errors="replace")[-2000:]}


def drop_caches() -> str | None:
    """None if the page cache was dropped, else why not."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return None
    except OSError as e:
        return f"cannot drop the page cache ({e.strerror}); cold runs are not possible here"


def prehash(inputs: list[str], cache_dir: str, keep: bool = False) -> float:
    """Fill a fresh hash cache for the inputs; the seconds it took (a separate pass, for comparison:
    ours hashes files it has not seen while merging, see the first_merge row)."""
    sys_path()
    from lib_merge.io.hashing import HashCache
    path = os.path.join(cache_dir, "hashes.json")
    if os.path.exists(path) and not keep:
        os.remove(path)  # measure the real cost every run
    cache = HashCache(path)
    t0 = time.perf_counter()
    for p in inputs:
        cache.sha256(p)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- the run


def drop_caches_allowed() -> bool:
    try:
        with open("/proc/sys/vm/drop_caches", "w"):
            pass
        return True
    except OSError:
        return False
