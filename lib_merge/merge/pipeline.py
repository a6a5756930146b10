"""The threaded stream under `engine.merge`: read, compute, write, overlapped.

- A reader thread does positioned reads of raw bytes into pooled buffers (and asks the kernel to
  read ahead), nothing else: measured, conversions in that thread made it the bottleneck.
- The caller's thread converts, merges and casts in cache-sized slices (256K elements): on big
  buffers each of those passes ran ~3x slower than on slices that stay in the CPU cache.
- A writer thread appends the result to the output (or fills a dict).
Elementwise methods see flat slices; columnwise ones (cosine, given each column's k from the first
pass) slices of whole rows shaped (rows, *shape[1:]); others whole tensors in their own shapes.
"""
from __future__ import annotations

import math
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import torch

from .engine_types import CancelToken, Progress
from ..errors import Cancelled, MergeError
from ..io.models import ModelSource
from ..io.safetensors_io import DTYPES, SafetensorsReader, itemsize
from .compute import Job, _Compute, row_step
from .plan import MergePlan
from .scaled import read_scales
from .sinks import DictSink, FileSink  # noqa: F401  (the engine's sinks, here for callers)

if TYPE_CHECKING:
    from .cosine_stats import CosineStats

# Measured (issue 12, real-size SD1.5 weight sum, 2 cores, 32 MiB L3): 2M-element chunks and 3
# reads in flight took 2.2-3.2 s; 1M and 2, 1.1-1.5 s: what the reader puts in flight still sits in
# the CPU cache when the compute step reads it, and the per-chunk Python cost stays small.
CHUNK = 1 << 20  # elements per read (4 MiB of fp32)
DEPTH = 2  # reads in flight
PREFETCH = 8  # jobs ahead the kernel is asked to read (cold SD1.5 weight sum: 2 -> 4.8-7.1 s, 8 -> 3.2-3.5 s)


class _Stop(Exception):
    pass


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            pass


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            pass


def jobs_for(plan: MergePlan) -> list[Job]:
    jobs: list[Job] = []
    elementwise = plan.method.elementwise
    # columnwise (cosine): given each column's k from the first pass, merged in chunks of whole rows
    rows = plan.method.columnwise and torch.device(plan.recipe.device).type == "cpu"
    for kp in plan.keys:
        numel = math.prod(kp.shape)
        by_rows = rows and kp.merge and kp.channels is None and not kp.adjust
        # whole: the shape matters (non-elementwise methods, inpainting channels, adjust); anything
        # else goes through the cache-sized slices, however small it is
        whole = (kp.merge and not by_rows and (not elementwise or kp.channels is not None)) or kp.adjust or kp.rescale
        # a chunk fills one pooled buffer (CHUNK float32s) in the widest dtype it touches: 1-byte fp8
        # keys go 4 times as far per read (fewer, longer steps where decoding is the work)
        used = plan.headers[:plan.method.n_models] if kp.merge else plan.headers[:1]
        widest = max([itemsize(kp.out_dtype)] + [itemsize(h[kp.key].dtype) for h in used if kp.key in h])
        elements = CHUNK * 4 if widest == 1 else CHUNK
        step = row_step(kp, elements) if by_rows else elements
        if whole or numel <= step:
            jobs.append(Job(kp, 0, numel, whole))
        else:
            jobs.extend(Job(kp, s, min(step, numel - s), False) for s in range(0, numel, step))
    return jobs


def read_into(src: ModelSource, key: str, buf: torch.Tensor, first: int, count: int) -> torch.Tensor:
    """A flat tensor of the source's dtype with elements [first, first+count) of key, in buf if possible."""
    if isinstance(src, SafetensorsReader):
        return src.read_tensor(key, memoryview(buf.numpy()), first, count)
    return src.read_tensor(key, memoryview(b""), first, count)  # in memory already: a view


def _prefetch(sources: list[ModelSource], job: Job) -> None:
    used = sources if job.kp.merge else sources[:1]
    for s in used:
        if isinstance(s, SafetensorsReader):
            s.prefetch(job.kp.key, job.first, None if job.whole else job.count)


def _drop(sources: list[ModelSource], job: Job) -> None:
    used = sources if job.kp.merge else sources[:1]
    for s in used:
        if isinstance(s, SafetensorsReader):
            s.drop(job.kp.key, job.first, None if job.whole else job.count)


def memory_is_tight(sources: list[ModelSource], out_bytes: int) -> bool:
    """Inputs and output cannot all stay in the page cache together: the kernel would evict input
    pages anyway, by scanning while the output is written; dropping each range right after reading
    it is cheaper (Linux only). Measured against total RAM, not MemAvailable, which counts the
    reclaimable cache as free and so says "fits" exactly when the cache is full of other files."""
    try:
        with open("/proc/meminfo") as f:
            total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError):
        return False
    need = out_bytes + sum(os.path.getsize(s.path) for s in sources if isinstance(s, SafetensorsReader))
    return need > total // 2  # the other half: the webui, its model, the rest of the system


class _Pool:
    """Buffers handed between threads and back, allocated once (fresh pages cost more than copies)."""

    def __init__(self, n: int, nbytes: int):
        self.nbytes = nbytes
        self.q: queue.Queue = queue.Queue()
        for _ in range(n):
            self.q.put(torch.empty(nbytes, dtype=torch.uint8))

    def take(self, nbytes: int, stop: threading.Event) -> tuple[torch.Tensor, bool]:
        if nbytes > self.nbytes:
            return torch.empty(nbytes, dtype=torch.uint8), False
        return _get(self.q, stop), True

    def give(self, buf: torch.Tensor, pooled: bool) -> None:
        if pooled:
            self.q.put(buf)


def run(plan: MergePlan, sources: list[ModelSource], sink, stats: "CosineStats | None",
        progress: Progress | None, cancel: CancelToken | None) -> None:
    jobs = jobs_for(plan)
    n = len(sources)
    total = sum(j.count * itemsize(j.kp.out_dtype) for j in jobs)
    stop = threading.Event()
    q_in: queue.Queue = queue.Queue(DEPTH)
    q_out: queue.Queue = queue.Queue(DEPTH)
    raw_pool = _Pool((DEPTH + 2) * n, CHUNK * 4)  # fp32 inputs fill it; fp16 half
    out_pool = _Pool(DEPTH + 2, CHUNK * 4)
    errors: list[BaseException] = []
    src_a = sources[0]
    # files that do not fit in the page cache together: each input range is evicted once read and
    # each output stretch once on disk. Measured (real-size SDXL, 3 x 6.9 GB in, 24 GiB RAM), evicting
    # the output too took add difference from 13.4-13.7 s to 10.9-12.0 s and train difference from
    # 13.7-19.4 s to 11.6-15.7 s: the kernel no longer reclaims under pressure, and the fsync is short
    drop_behind = memory_is_tight(sources, total)
    if drop_behind and isinstance(sink, FileSink):
        sink.drop_behind()

    def reader() -> None:
        try:
            for i, job in enumerate(jobs):
                if i + PREFETCH < len(jobs):
                    _prefetch(sources, jobs[i + PREFETCH])
                kp = job.kp
                if kp.scale_for:  # a new scale: computed with its weight, nothing to read
                    _put(q_in, (job, "scale", None, []), stop)
                    continue
                if not kp.merge and not kp.adjust and src_a.tensors[kp.key].dtype == kp.out_dtype:
                    nbytes = job.count * itemsize(kp.out_dtype)
                    ob, pooled = out_pool.take(nbytes, stop)
                    t = read_into(src_a, kp.key, ob, job.first, job.count)
                    if t.data_ptr() != ob.data_ptr() and t.numel():  # in-memory source: copy its bytes
                        ob[:nbytes].view(t.dtype).copy_(t)
                    if drop_behind:
                        _drop(sources[:1], job)
                    _put(q_in, (job, "bytes", ob, pooled), stop)
                    continue
                used = sources if kp.merge else sources[:1]
                bufs, ts = [], []
                for s in used:
                    info = s.tensors[kp.key]
                    count = info.numel if job.whole else job.count
                    buf, pooled = raw_pool.take(count * itemsize(info.dtype), stop)
                    bufs.append((buf, pooled))
                    t = read_into(s, kp.key, buf, job.first, count)
                    ts.append(t.reshape(info.shape) if job.whole else t)
                if drop_behind:
                    _drop(sources, job)
                _put(q_in, (job, "tensors", ts, bufs), stop)
            _put(q_in, None, stop)
        except _Stop:
            pass
        except BaseException as e:  # handed to the caller's thread
            errors.append(e)
            stop.set()

    def writer() -> None:
        try:
            while True:
                item = _get(q_out, stop)
                if item is None:
                    return
                job, data, buf, pooled = item
                sink.put(job, data)
                out_pool.give(buf, pooled)
        except _Stop:
            pass
        except BaseException as e:
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=reader, name="merge-reader", daemon=True),
               threading.Thread(target=writer, name="merge-writer", daemon=True)]
    for t in threads:
        t.start()
    # a second compute thread for fp8 inputs (decoding them is most of the work): 2+ cores only
    pool = ThreadPoolExecutor(1, thread_name_prefix="merge-compute") if (os.cpu_count() or 1) >= 2 else None
    compute = _Compute(plan, n, stats, read_scales(plan.scaled, sources) if any(plan.scaled) else [{}] * n, pool)
    done = 0
    try:
        while True:
            if cancel is not None and cancel.cancelled:
                raise Cancelled()
            item = _get(q_in, stop)
            if item is None:
                break
            job, kind, payload, bufs = item
            nbytes = job.count * itemsize(job.kp.out_dtype)
            if kind == "bytes":
                _put(q_out, (job, payload[:nbytes], payload, bufs), stop)
            elif kind == "scale":
                ob, pooled = out_pool.take(nbytes, stop)
                compute.scale(job.kp, ob[:nbytes].view(DTYPES[job.kp.out_dtype]))
                _put(q_out, (job, ob[:nbytes], ob, pooled), stop)
            else:
                ob, pooled = out_pool.take(nbytes, stop)
                compute(job, payload, ob[:nbytes].view(DTYPES[job.kp.out_dtype]))
                for buf, p in bufs:
                    raw_pool.give(buf, p)
                _put(q_out, (job, ob[:nbytes], ob, pooled), stop)
            done += nbytes
            if progress:
                progress(done, total, "merging")
        _put(q_out, None, stop)
        threads[1].join()
    except _Stop:
        pass
    except BaseException:
        stop.set()
        raise
    finally:
        if errors:
            stop.set()
        for t in threads:
            t.join()
        if pool is not None:
            pool.shutdown(wait=True)
    if errors:
        e = errors[0]
        if isinstance(e, (MergeError, OSError)):  # OSError: disk full, worded by atomic_write
            raise e
        raise RuntimeError(f"merge failed: {e}") from e


