"""The streaming merge: read key by key, compute in float32, write as it goes.

Three stages overlap: a reader thread (positioned reads into reused buffers, conversion to
float32), the caller's thread (the merge method, adjust, the cast to the output dtype) and a writer
thread (the output file, whose header is written first since every shape and dtype is known).
Elementwise methods see big tensors in chunks, so peak memory is a handful of chunk buffers
whatever the model size.
"""
from __future__ import annotations

import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, MutableMapping

import numpy as np
import torch

from .errors import Cancelled, MergeError
from .io.atomic import atomic_write, check_output, shorten
from .io.hashing import HashCache
from .io.models import ModelSource, open_model, read_shapes
from .io.safetensors_io import DTYPES, SafetensorsReader, SafetensorsWriter, itemsize
from .methods import KeyContext
from .plan import KeyPlan, MergePlan, build_plan
from .presets import PresetBook
from .provenance import file_metadata, models_metadata
from .recipe import Recipe

log = logging.getLogger("lib_merge")

CHUNK = 1 << 22  # elements per chunk of an elementwise merge (16 MiB in float32)
DEPTH = 3  # chunks in flight between stages

Progress = Callable[[int, int, str], None]  # (done, total, what)


class CancelToken:
    """Thread-safe flag a UI sets to stop a merge; the merge raises Cancelled and writes nothing."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class MergeResult:
    output: str | None
    state_dict: MutableMapping[str, torch.Tensor] | None
    metadata: dict[str, str]
    plan: MergePlan
    hashes: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _Job:
    kp: KeyPlan
    first: int
    count: int
    whole: bool  # the tensor in one piece (shape matters), not a flat chunk


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


def plan_merge(recipe: Recipe, presets: PresetBook | None = None) -> MergePlan:
    """Read the inputs' headers and build the plan (no tensor is read): validates everything."""
    heads = [read_shapes(p) for p in recipe.models]
    return build_plan(recipe, [h for h, _ in heads], [m for _, m in heads], presets)


def merge(recipe: Recipe, output: str | MutableMapping[str, torch.Tensor] | None = None, *,
          overwrite: bool = False, progress: Progress | None = None, cancel: CancelToken | None = None,
          hash_cache: HashCache | None = None, presets: PresetBook | None = None,
          hash_models: bool = True) -> MergeResult:
    """Merge as the recipe says, into a file (`output` a path), a dict (`output` a mapping, e.g. to
    load into a running webui) or a new dict (`output` None)."""
    t0 = time.perf_counter()
    to_file = isinstance(output, str)
    if to_file:
        output = shorten(output)
        check_output(output, overwrite)
    plan = plan_merge(recipe, presets)
    recipe = plan.recipe
    n = plan.method.n_models
    paths = list(recipe.models[:n])
    hashes: list[str] = []
    models: dict[str, Any] = {}
    if hash_models:
        cache = hash_cache or HashCache()
        for i, p in enumerate(paths):
            if progress:
                progress(i, n, "hashing inputs")
        models, hashes = models_metadata(paths, cache, dict(zip(paths, plan.metadata)))
    recorded = plan.recorded()
    recorded["model_hashes"] = hashes
    meta = file_metadata("merge", recorded, models)
    sources = [open_model(p) for p in paths]
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)  # measured: on a shared 2-core box one intra-op thread is fastest
    try:
        ctx_stats = _stats_pass(plan, sources, progress, cancel) if plan.method.needs_stats else None
        if to_file:
            entries = [(k.key, k.out_dtype, k.shape) for k in plan.keys]
            with atomic_write(output, overwrite) as f:
                writer = SafetensorsWriter(f, entries, meta)
                _run(plan, sources, _FileSink(writer), ctx_stats, progress, cancel)
                writer.finish()
            sd = None
        else:
            sd = output if output is not None else {}
            _run(plan, sources, _DictSink(sd, plan), ctx_stats, progress, cancel)
    finally:
        torch.set_num_threads(threads_before)
        for s in sources:
            s.close()
    return MergeResult(output if to_file else None, sd, meta, plan, hashes, time.perf_counter() - t0)


def _read_float(src: ModelSource, key: str, raw: memoryview, first: int, count: int, out: torch.Tensor) -> torch.Tensor:
    t = src.read_tensor(key, raw, first, count)
    dst = out[:count]
    dst.copy_(t)
    return dst


def _stats_pass(plan: MergePlan, sources: list[ModelSource], progress: Progress | None,
                cancel: CancelToken | None) -> tuple[float, float]:
    """First pass of the cosine modes: collect every merged key's similarity samples, take percentiles."""
    samples = []
    keys = [k for k in plan.keys if k.merge]
    for i, kp in enumerate(keys):
        if cancel is not None and cancel.cancelled:
            raise Cancelled()
        a = sources[0].get(kp.key).to(torch.float32)
        b = sources[1].get(kp.key).to(torch.float32)
        if kp.channels is not None:
            a, b = a[:, :kp.channels], b[:, :kp.channels]
        s = plan.method.stat(a, b).reshape(-1).numpy()
        samples.append(s[~np.isnan(s)])
        if progress:
            progress(i + 1, len(keys), "similarity statistics")
    allv = np.concatenate(samples) if samples else np.zeros(1)
    if allv.size == 0:
        allv = np.zeros(1)
    lo, hi = np.percentile(allv, [1, 99])
    return float(lo), float(hi)


class _FileSink:
    def __init__(self, writer: SafetensorsWriter):
        self.writer = writer

    def put(self, job: _Job, data: torch.Tensor) -> None:  # data: uint8 bytes of the output dtype
        if data.numel():
            self.writer.write(job.kp.key, data)


class _DictSink:
    def __init__(self, sd: MutableMapping[str, torch.Tensor], plan: MergePlan):
        self.sd = sd

    def put(self, job: _Job, data: torch.Tensor) -> None:
        kp = job.kp
        dtype = DTYPES[kp.out_dtype]
        if job.first == 0:
            self.sd[kp.key] = torch.empty(kp.shape, dtype=dtype)
        if data.numel():
            self.sd[kp.key].view(-1)[job.first:job.first + job.count].copy_(data.view(dtype))


def _jobs(plan: MergePlan) -> list[_Job]:
    jobs: list[_Job] = []
    elementwise = plan.method.elementwise
    for kp in plan.keys:
        numel = math.prod(kp.shape)
        whole = (kp.merge and (not elementwise or kp.channels is not None)) or kp.adjust
        if whole or numel <= CHUNK:
            jobs.append(_Job(kp, 0, numel, True))
        else:
            jobs.extend(_Job(kp, s, min(CHUNK, numel - s), False) for s in range(0, numel, CHUNK))
    return jobs


def _run(plan: MergePlan, sources: list[ModelSource], sink, stats: tuple[float, float] | None,
         progress: Progress | None, cancel: CancelToken | None) -> None:
    jobs = _jobs(plan)
    n = len(sources)
    total = sum(j.count * itemsize(j.kp.out_dtype) for j in jobs)
    stop = threading.Event()
    q_in: queue.Queue = queue.Queue(DEPTH)
    q_out: queue.Queue = queue.Queue(DEPTH)
    fsets: queue.Queue = queue.Queue()
    obufs: queue.Queue = queue.Queue()
    for _ in range(DEPTH + 2):
        fsets.put([torch.empty(CHUNK, dtype=torch.float32) for _ in range(n)])
        obufs.put(torch.empty(CHUNK * 8, dtype=torch.uint8))
    errors: list[BaseException] = []
    device = torch.device(plan.recipe.device)
    src_a = sources[0]

    def reader() -> None:
        raws = [bytearray(CHUNK * 8) for _ in range(n)]
        views = [memoryview(r) for r in raws]
        try:
            for job in jobs:
                kp, first, count = job.kp, job.first, job.count
                big = count > CHUNK
                if not kp.merge and not kp.adjust and src_a.tensors[kp.key].dtype == kp.out_dtype:
                    nbytes = count * itemsize(kp.out_dtype)
                    ob = torch.empty(nbytes, dtype=torch.uint8) if nbytes > CHUNK * 8 else _get(obufs, stop)
                    _read_raw(src_a, kp.key, ob, first, count)
                    _put(q_in, (job, "raw", ob, None), stop)
                    continue
                used = sources if kp.merge else sources[:1]
                if big:
                    fs = None
                    ts = [s.get(kp.key).to(torch.float32).reshape(-1) for s in used]
                else:
                    fs = _get(fsets, stop)
                    # whole tensors are read in each input's own size: inpainting A and normal B differ
                    ts = [_read_float(s, kp.key, v, first, s.tensors[kp.key].numel if job.whole else count, f)
                          for s, v, f in zip(used, views, fs)]
                if job.whole:
                    ts = [t.reshape(s.tensors[kp.key].shape) for s, t in zip(used, ts)]
                _put(q_in, (job, "float", ts, fs), stop)
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
                job, data, pooled = item
                sink.put(job, data)
                if pooled is not None:
                    obufs.put(pooled)
        except _Stop:
            pass
        except BaseException as e:
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=reader, name="merge-reader", daemon=True),
               threading.Thread(target=writer, name="merge-writer", daemon=True)]
    for t in threads:
        t.start()
    done = 0
    method, arch_id, adj = plan.method, plan.arch.id, plan.adjust
    lo, hi = stats if stats else (None, None)
    try:
        while True:
            if cancel is not None and cancel.cancelled:
                raise Cancelled()
            item = _get(q_in, stop)
            if item is None:
                break
            job, kind, payload, fs = item
            kp = job.kp
            if kind == "raw":
                nbytes = job.count * itemsize(kp.out_dtype)
                pooled = payload if payload.numel() == CHUNK * 8 else None
                _put(q_out, (job, payload[:nbytes], pooled), stop)
            else:
                ts = payload
                if kp.merge:
                    r = _merge_one(method, kp, job, ts, device, lo, hi)
                else:
                    r = ts[0]
                if kp.adjust:
                    r = adj.apply(kp.key, r.reshape(kp.shape), arch_id).reshape(-1)
                nbytes = job.count * itemsize(kp.out_dtype)
                ob = torch.empty(nbytes, dtype=torch.uint8) if nbytes > CHUNK * 8 else _get(obufs, stop)
                ob[:nbytes].view(DTYPES[kp.out_dtype]).copy_(r.reshape(-1))
                if fs is not None:
                    fsets.put(fs)
                _put(q_out, (job, ob[:nbytes], ob if ob.numel() == CHUNK * 8 else None), stop)
            done += job.count * itemsize(kp.out_dtype)
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
        if errors or stop.is_set():
            stop.set()
        for t in threads:
            t.join()
    if errors:
        e = errors[0]
        if isinstance(e, MergeError):
            raise e
        raise RuntimeError(f"merge failed while {'reading' if 'read' in str(e) else 'working'}: {e}") from e


def _read_raw(src: ModelSource, key: str, dest: torch.Tensor, first: int, count: int) -> None:
    if isinstance(src, SafetensorsReader):
        src.read_bytes(key, memoryview(dest.numpy()), first, count)
    else:
        t = src.read_tensor(key, memoryview(b""), first, count)
        dest[:t.numel() * t.element_size()].view(t.dtype).copy_(t)


def _merge_one(method, kp: KeyPlan, job: _Job, ts: list[torch.Tensor], device: torch.device,
               lo: float | None, hi: float | None) -> torch.Tensor:
    ctx = KeyContext(kp.key, lo, hi)
    if device.type != "cpu":
        ts = [t.to(device) for t in ts]
    a = ts[0]
    if kp.channels is not None:
        c = kp.channels
        parts = [t[:, :c].contiguous() for t in ts]
        merged = method.merge(parts[0], *(parts[1:] + [None] * (3 - len(parts))), kp.weights, ctx)
        out = a.clone()
        out[:, :c] = merged
        r = out
    else:
        r = method.merge(a, *(ts[1:] + [None] * (3 - len(ts))), kp.weights, ctx)
    return r.cpu() if device.type != "cpu" else r
