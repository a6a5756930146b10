"""The first pass of the cosine calc modes: the similarity samples behind lo and hi (REFERENCE §2).

The population is the incumbent's (hako-mikan/sd-webui-supermerger scripts/mergers/mergers.py,
precosine, 0b1c491), so the same inputs give the same k for every key:
- every key of model A whose name contains "model" and that B has too, except the VAE
  (`first_stage_model`) — merged or not: excluded keys, keys of any block weight, `position_ids`
  and the OpenCLIP scalars count as well;
- each key's samples as the method's `stat` gives them (one per element of shape[1:]);
- NaN samples dropped; then the samples below the 1st percentile removed, then, of the rest, those
  above the 99th (both percentiles by the midpoint method, the second one taken after the first cut);
- lo and hi are the smallest and largest samples left.
A key whose shape differs between A and B is left out, except the first conv of inpainting /
pix2pix models, compared on their shared input channels as the merge does.

The pass streams: each key is read in row chunks into reused buffers and only its three sums per
column are kept (methods/cosine.py); the s of every merged key (a few MB for a whole model: one
float per column) is kept for the merge pass, which then needs no whole tensor either.
"""
from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import Cancelled
from ..io.models import ModelSource
from ..io.safetensors_io import SafetensorsReader, itemsize
from ..methods.cosine import ColumnSums, rows_per_chunk
from .engine_types import CancelToken, Progress
from .fp8_codec import Fp8Decoder
from . import compute, pipeline
from .pipeline import _get, _Pool, _put, _Stop, read_into  # the merge pass's own thread plumbing
from .plan import MergePlan
from .scaled import read_scales


@dataclass
class CosineStats:
    lo: float
    hi: float
    s: dict[str, torch.Tensor] = field(default_factory=dict)  # merged key -> s, float32, its column shape


def population_keys(plan: MergePlan) -> list[tuple[str, int | None]]:
    """(key, shared input channels or None) of every key whose similarity counts."""
    channels = {kp.key: kp.channels for kp in plan.keys}
    a, b = plan.headers[0], plan.headers[1]
    # fp8 scaled inputs: their scale keys and markers are bookkeeping, not weights
    skip = set().union(*((lay.scale_keys | lay.extras) for lay in plan.scaled[:2] if lay))
    out = []
    for key, ia in a.items():
        if "first_stage_model" in key or "model" not in key or key not in b or key in skip:
            continue
        ch = channels.get(key)
        if ia.shape != b[key].shape and ch is None:
            continue
        out.append((key, ch))
    return out


def trimmed_range(samples: np.ndarray) -> tuple[float, float]:
    """lo, hi of the samples: NaN dropped, below the 1st then above the 99th percentile cut."""
    s = samples[~np.isnan(samples)]
    if s.size == 0:
        return 0.0, 0.0
    s = s[s >= np.percentile(s, 1, method="midpoint")]
    s = s[s <= np.percentile(s, 99, method="midpoint")]
    return float(s.min()), float(s.max())


def _ncols(shape: tuple[int, ...]) -> int:
    return math.prod(shape[1:]) if shape else 1


@dataclass
class _Layout:
    """How one key is read and summed: row chunks of both inputs, their shared column block."""
    key: str
    channels: int | None
    rows: int
    ncols: list[int]  # per input (inpainting first convs differ)
    inner: list[int]  # elements per input channel (channels) or per column
    width: int  # columns summed
    mults: list[float | None]  # fp8 scaled inputs: the weight's scale

    @property
    def read_rows(self) -> int:
        return rows_per_chunk(max(self.ncols), pipeline.CHUNK)

    @property
    def slice_rows(self) -> int:
        return rows_per_chunk(max(self.ncols), compute.SLICE)


class _Summer:
    """Sums each key of A and B: a reader thread reads row chunks into pooled buffers (positioned
    reads; the next key's range is prefetched), this thread converts and sums them in cache-sized
    slices into ColumnSums."""

    def __init__(self, sources: list[ModelSource], scales: list[dict[str, float]], scale_of: list[dict[str, str]]):
        self.sources, self.scales, self.scale_of = sources, scales, scale_of
        self.pools = [_Pool(pipeline.DEPTH + 1, pipeline.CHUNK * 4) for _ in sources]
        self.f32 = [torch.empty(compute.SLICE, dtype=torch.float32) for _ in range(3)]
        self.fp8 = Fp8Decoder(compute.SLICE)  # fp8 inputs: widened in bulk, not by torch's scalar loop

    def layout(self, key: str, channels: int | None) -> _Layout:
        infos = [s.tensors[key] for s in self.sources]
        ncols = [_ncols(i.shape) for i in infos]
        inner = [n // i.shape[1] if channels is not None else n for n, i in zip(ncols, infos)]
        mults = [self.scales[i][self.scale_of[i][key]] if key in self.scale_of[i] else None for i in range(2)]
        return _Layout(key, channels, infos[0].shape[0] if infos[0].shape else 1, ncols, inner,
                       channels * inner[0] if channels is not None else ncols[0], mults)

    def _f32(self, i: int, n: int) -> torch.Tensor:
        if self.f32[i].numel() < n:  # one row longer than a slice: rare, grown once
            self.f32[i] = torch.empty(n, dtype=torch.float32)
            if self.fp8.i16.numel() < n:
                self.fp8 = Fp8Decoder(n)
        return self.f32[i][:n]

    def read(self, keys: list[tuple[str, int | None]], q: queue.Queue, stop: threading.Event,
             errors: list[BaseException]) -> None:
        """The reader thread: per key ("key", layout), then ("rows", r, tensors, buffers) per chunk."""
        try:
            for i, (key, ch) in enumerate(keys):
                if i + 1 < len(keys):  # cold caches: the next key's reads start while this one is summed
                    for src in self.sources:
                        if isinstance(src, SafetensorsReader):
                            src.prefetch(keys[i + 1][0])
                lay = self.layout(key, ch)
                _put(q, ("key", lay), stop)
                for r0 in range(0, lay.rows, lay.read_rows):
                    r = min(lay.read_rows, lay.rows - r0)
                    ts, bufs = [], []
                    for pool, src, n in zip(self.pools, self.sources, lay.ncols):
                        buf, pooled = pool.take(r * n * itemsize(src.tensors[key].dtype), stop)
                        bufs.append((pool, buf, pooled))
                        ts.append(read_into(src, key, buf, r0 * n, r * n))
                    _put(q, ("rows", r, ts, bufs), stop)
            _put(q, None, stop)
        except _Stop:
            pass
        except BaseException as e:  # handed to the summing thread
            errors.append(e)
            stop.set()

    def add(self, lay: _Layout, sums: ColumnSums, r: int, ts: list[torch.Tensor]) -> None:
        q_rows, width = lay.slice_rows, lay.width
        for q0 in range(0, r, q_rows):
            q = min(q_rows, r - q0)
            xs = []
            for i, (t, n) in enumerate(zip(ts, lay.ncols)):
                x = self._f32(i, q * n)
                if Fp8Decoder.handles(t.dtype):
                    self.fp8(x, t[q0 * n:(q0 + q) * n])
                else:
                    x.copy_(t[q0 * n:(q0 + q) * n])
                if lay.mults[i] is not None:
                    x.mul_(lay.mults[i])
                x = x.view(q, n)
                if lay.channels is not None:  # inpainting first conv: the shared input channels
                    x = x.view(q, -1, lay.inner[i])[:, :lay.channels].reshape(q, width)
                xs.append(x)
            sums.add(xs[0], xs[1], self._f32(2, q * width))

    def each(self, keys: list[tuple[str, int | None]], cancel: CancelToken | None):
        """(key, ColumnSums) for every key, in order."""
        q: queue.Queue = queue.Queue(pipeline.DEPTH)
        stop, errors = threading.Event(), []
        thread = threading.Thread(target=self.read, args=(keys, q, stop, errors), name="cosine-reader", daemon=True)
        thread.start()
        lay, sums = None, None
        try:
            while True:
                if cancel is not None and cancel.cancelled:
                    raise Cancelled()
                item = _get(q, stop)
                if item is None or item[0] == "key":
                    if lay is not None:
                        yield lay.key, sums
                    if item is None:
                        break
                    lay = item[1]
                    sums = ColumnSums(lay.width)
                    continue
                _, r, ts, bufs = item
                self.add(lay, sums, r, ts)
                for pool, buf, pooled in bufs:
                    pool.give(buf, pooled)
        except _Stop:
            pass
        finally:
            stop.set()
            thread.join()
        if errors:
            raise errors[0]


def cosine_range(plan: MergePlan, sources: list[ModelSource], progress: Progress | None,
                 cancel: CancelToken | None) -> CosineStats:
    """lo and hi over the population, and s of every merged key, in one streamed pass."""
    pop = population_keys(plan)
    counted = {k for k, _ in pop}
    channels = dict(pop)
    # merged keys outside the population (a key without "model" in its name) need s all the same
    for kp in plan.keys:
        if kp.merge and kp.key not in channels and not kp.scale_for:
            channels[kp.key] = kp.channels
    merged = {kp.key: kp for kp in plan.keys if kp.merge}
    values = read_scales(plan.scaled[:2], sources[:2]) if any(plan.scaled[:2]) else [{}, {}]
    scale_of = [lay.scale_of if lay else {} for lay in (plan.scaled[:2] or [None, None])]
    keys = list(channels.items())
    samples, s_of = [], {}
    for i, (key, sums) in enumerate(_Summer(sources[:2], values, scale_of).each(keys, cancel)):
        ch = channels[key]
        s, stat = plan.method.from_sums(sums)
        if key in counted:
            samples.append(stat.numpy().astype(np.float64))
        if key in merged:
            shape = merged[key].shape
            col_shape = (ch, *shape[2:]) if ch is not None else shape[1:]
            s_of[key] = s.reshape(col_shape)
        if progress:
            progress(i + 1, len(keys), "similarity statistics")
    lo, hi = trimmed_range(np.concatenate(samples) if samples else np.zeros(0))
    return CosineStats(lo, hi, s_of)
