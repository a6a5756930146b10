"""The threaded stream under `engine.merge`: read, compute, write, overlapped.

- A reader thread does positioned reads of raw bytes into pooled buffers (and asks the kernel to
  read ahead), nothing else: measured, conversions in that thread made it the bottleneck.
- The caller's thread converts, merges and casts in cache-sized slices (256K elements): on big
  buffers each of those passes ran ~3x slower than on slices that stay in the CPU cache.
- A writer thread appends the result to the output (or fills a dict).
Elementwise methods see flat slices; others see whole tensors in their own shapes.
"""
from __future__ import annotations

import math
import os
import queue
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .engine_types import CancelToken, Progress
from ..errors import Cancelled, MergeError
from ..io.models import ModelSource
from ..io.safetensors_io import DTYPES, SafetensorsReader, itemsize
from ..methods import KeyContext, MergeMethod
from ..methods.finite import finite_or_stop
from .plan import KeyPlan, MergePlan
from .scaled import read_scales
from .sinks import DictSink, FileSink  # noqa: F401  (the engine's sinks, here for callers)

if TYPE_CHECKING:
    from .cosine_stats import CosineStats

CHUNK = 1 << 21  # elements per read (8 MiB of fp32)
SLICE = 1 << 18  # elements per convert/merge/cast step
DEPTH = 3  # reads in flight
PREFETCH = 2  # jobs ahead the kernel is asked to read


@dataclass
class Job:
    kp: KeyPlan
    first: int
    count: int
    whole: bool  # the whole tensor in one piece (its shape matters), not a flat chunk


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


def row_step(kp: KeyPlan, elements: int) -> int:
    """Elements in a chunk of about `elements` made of whole rows of the key (columnwise methods)."""
    ncols = math.prod(kp.shape[1:]) if kp.shape else 1
    return max(1, elements // max(ncols, 1)) * ncols


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
        step = row_step(kp, CHUNK) if by_rows else CHUNK
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
    drop_behind = memory_is_tight(sources, total)

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
    compute = _Compute(plan, n, stats, read_scales(plan.scaled, sources) if any(plan.scaled) else [{}] * n)
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
    if errors:
        e = errors[0]
        if isinstance(e, (MergeError, OSError)):  # OSError: disk full, worded by atomic_write
            raise e
        raise RuntimeError(f"merge failed: {e}") from e


class _Compute:
    """Turns one job's input tensors (source dtypes) into its output (out dtype), in place."""

    def __init__(self, plan: MergePlan, n: int, stats: "CosineStats | None",
                 scales: list[dict[str, float]] | None = None):
        self.scales = scales or [{}] * n  # fp8 scaled inputs: {scale key: value} per source
        self.new_scales: dict[str, float] = {}  # weight key -> the scale its fp8 output was written with
        self.method: MergeMethod = plan.method
        self.arch_id = plan.arch.id
        self.adjust = plan.adjust
        self.device = torch.device(plan.recipe.device)
        self.lo, self.hi = (stats.lo, stats.hi) if stats else (None, None)
        self.columns = stats.s if stats else {}  # columnwise methods: each merged key's s
        self._ctx: KeyContext | None = None
        self.scratch = [torch.empty(SLICE, dtype=torch.float32) for _ in range(n)]

    def context(self, kp: KeyPlan) -> KeyContext:
        """The key's context; for a columnwise method its per-column factor, worked out once per key
        (a key's jobs come one after another)."""
        if self._ctx is None or self._ctx.key != kp.key:
            ctx, s = KeyContext(kp.key, self.lo, self.hi), self.columns.get(kp.key)
            if s is not None and self.method.columnwise:
                k = self.method.column_factor(s, kp.weights, ctx)
                ctx = KeyContext(kp.key, self.lo, self.hi, k.to(self.device))
            self._ctx = ctx
        return self._ctx

    def __call__(self, job: Job, ts: list[torch.Tensor], out: torch.Tensor) -> None:
        kp = job.kp
        if not kp.merge:  # A's bytes (cast to the output dtype); never adjusted (plan.py)
            a = ts[0].reshape(-1)
            if kp.scales and kp.scales[0]:  # a scaled fp8 weight written plain: de-scaled
                a = a.float() * self.scales[0][kp.scales[0]]
            out.copy_(fit(a, out.dtype))
            if out.dtype != ts[0].dtype:  # a cast can overflow (fp32 past 65504 to fp16)
                finite_or_stop(kp.key, out, ts[:1])
            return
        ctx = self.context(kp)
        if not job.whole and self.device.type == "cpu":
            self._slices(job, ts, out, ctx)
            return
        by_rows = self.method.columnwise and ctx.column is not None
        if kp.rescale and (self.method.elementwise or by_rows) and kp.channels is None and not kp.adjust \
                and self.device.type == "cpu":
            self._rescaled(job, [t.reshape(-1) for t in ts], out, ctx)
            return
        fs = [t.to(self.device, torch.float32) for t in ts]
        for i, sk in enumerate(kp.scales):
            if sk:
                fs[i] = fs[i] * self.scales[i][sk]
        # the incumbent skips the rest of a key, adjust included, where the method leaves A as it is
        adjust = kp.adjust and not self.method.leaves_a(*fs)
        r = self._merge(kp, fs, ctx)
        if adjust:
            r = self.adjust.apply(kp.key, r, self.arch_id)
        if kp.rescale:  # a new per-tensor scale: amax / fp8 max (Comfy's TensorCoreFP8Layout.quantize)
            amax = float(r.abs().max()) if r.numel() else 0.0
            scale = amax / torch.finfo(out.dtype).max if amax > 0 and math.isfinite(amax) else 1.0
            self.new_scales[kp.key] = scale
            r = r * (1.0 / scale)
        out.copy_(fit(r.reshape(-1), out.dtype))
        finite_or_stop(kp.key, out, ts)

    def _rescaled(self, job: Job, ts: list[torch.Tensor], out: torch.Tensor, ctx: KeyContext) -> None:
        """A weight written fp8 with a new scale, in cache-sized slices: the merged float32 tensor is
        kept once (its amax is needed before the first fp8 value), never its temporaries."""
        merged = torch.empty(job.count, dtype=torch.float32)
        self._slices(job, ts, merged, ctx)
        amax = max((float(merged[s:s + SLICE].abs().max()) for s in range(0, job.count, SLICE)), default=0.0)
        scale = amax / torch.finfo(out.dtype).max if amax > 0 and math.isfinite(amax) else 1.0
        self.new_scales[job.kp.key] = scale
        inv = 1.0 / scale
        for s in range(0, job.count, SLICE):
            out[s:s + SLICE].copy_(fit(merged[s:s + SLICE] * inv, out.dtype))

    def scale(self, kp: KeyPlan, out: torch.Tensor) -> None:
        """A weight's scale key: the new scale of a merged weight, else A's own."""
        value = self.new_scales.pop(kp.scale_for, None) if kp.scale_for else None
        if value is None:
            value = self.scales[0][kp.key]
        out.fill_(value)

    def _slices(self, job: Job, ts: list[torch.Tensor], out: torch.Tensor, ctx: KeyContext) -> None:
        w, method, pad = job.kp.weights, self.method, [None] * (3 - len(ts))
        # a convex combination of inputs of the output's own 16-bit dtype cannot overflow it (the
        # float32 math has ample headroom over float16/bfloat16): the NaN/inf pass would find
        # nothing the inputs did not have, and it cost ~15% of the math (measured, issue 12)
        native = (out.dtype in (torch.float16, torch.bfloat16) and all(t.dtype == out.dtype for t in ts)
                  and not any(job.kp.scales))
        check = not (native and method.convex(w))
        # inputs already in the output's 16-bit dtype: one fused kernel over the whole chunk where the
        # method has one (no float32 scratch: the chunk is read once and written once)
        if native and method.merge_native(*ts, *pad, w, ctx, out):
            if check:
                finite_or_stop(job.kp.key, out, ts)
            return
        step, rows = SLICE, None
        if ctx.column is not None:  # columnwise: slices of whole rows, shaped so k broadcasts over them
            step, rows = row_step(job.kp, SLICE), job.kp.shape[1:]
            if step > self.scratch[0].numel():  # one row longer than a slice: rare, grown once
                self.scratch = [torch.empty(step, dtype=torch.float32) for _ in self.scratch]
        for s in range(0, job.count, step):
            m = min(step, job.count - s)
            xs = [x[:m] for x in self.scratch[:len(ts)]]
            for x, t in zip(xs, ts):
                x.copy_(t[s:s + m])
            for i, sk in enumerate(job.kp.scales):
                if sk:
                    xs[i].mul_(self.scales[i][sk])
            if rows is not None:
                xs = [x.view(-1, *rows) for x in xs]
            out[s:s + m].copy_(fit(method.merge(*xs, *pad, w, ctx).reshape(-1), out.dtype))
            if check:
                finite_or_stop(job.kp.key, out[s:s + m], [t[s:s + m] for t in ts])

    def _merge(self, kp: KeyPlan, fs: list[torch.Tensor], ctx: KeyContext) -> torch.Tensor:
        pad = [None] * (3 - len(fs))
        if kp.channels is None:
            return self.method.merge(fs[0], *fs[1:], *pad, kp.weights, ctx).cpu()
        c = kp.channels  # inpainting / pix2pix first conv: merge the shared input channels only
        parts = [f[:, :c].contiguous() for f in fs]
        out = fs[0].clone()
        out[:, :c] = self.method.merge(parts[0], *parts[1:], *pad, kp.weights, ctx)
        return out.cpu()


_FP8 = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n))


def fit(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """fp8 has no infinity (e4m3fn) and a small range: values past it are clamped to the largest
    finite value before the cast, as SuperMerger and Comfy do, instead of turning into NaN."""
    if dtype in _FP8 and t.dtype not in _FP8:
        lim = torch.finfo(dtype).max
        return t.float().clamp(-lim, lim)
    return t
