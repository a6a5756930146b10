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
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import Cancelled
from ..io.models import ModelSource
from ..io.safetensors_io import SafetensorsReader, itemsize
from ..methods.cosine import ColumnSums, rows_per_chunk
from .engine_types import CancelToken, Progress
from . import pipeline
from .pipeline import read_into
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


class _Summer:
    """Reads one key of A and B in row chunks (reused buffers) and returns its ColumnSums."""

    def __init__(self, sources: list[ModelSource], scales: list[dict[str, float]], scale_of: list[dict[str, str]]):
        self.sources, self.scales, self.scale_of = sources, scales, scale_of
        self.raw = [torch.empty(pipeline.CHUNK * 4, dtype=torch.uint8) for _ in sources]
        self.f32 = [torch.empty(pipeline.SLICE, dtype=torch.float32) for _ in range(3)]

    def _buf(self, i: int, n: int, nbytes: bool) -> torch.Tensor:
        bufs = self.raw if nbytes else self.f32
        if bufs[i].numel() < n:  # one row longer than a chunk: rare, grown once
            bufs[i] = torch.empty(n, dtype=bufs[i].dtype)
        return bufs[i]

    def sums(self, key: str, channels: int | None) -> ColumnSums:
        infos = [s.tensors[key] for s in self.sources]
        rows = infos[0].shape[0] if infos[0].shape else 1
        ncols = [_ncols(i.shape) for i in infos]
        # the column block both inputs share: all of a column, or the first input channels
        inner = [n // i.shape[1] if channels is not None else n for n, i in zip(ncols, infos)]
        width = channels * inner[0] if channels is not None else ncols[0]
        sums = ColumnSums(width)
        read_rows = rows_per_chunk(max(ncols), pipeline.CHUNK)
        slice_rows = rows_per_chunk(max(ncols), pipeline.SLICE)
        mults = [self.scales[i][self.scale_of[i][key]] if key in self.scale_of[i] else None for i in range(2)]
        for r0 in range(0, rows, read_rows):
            r = min(read_rows, rows - r0)
            ts = []
            for i, (src, info, n) in enumerate(zip(self.sources, infos, ncols)):
                buf = self._buf(i, r * n * itemsize(info.dtype), True)
                ts.append(read_into(src, key, buf, r0 * n, r * n))
            for q0 in range(0, r, slice_rows):
                q = min(slice_rows, r - q0)
                xs = []
                for i, (t, n) in enumerate(zip(ts, ncols)):
                    x = self._buf(i, q * n, False)[:q * n]
                    x.copy_(t[q0 * n:(q0 + q) * n])
                    if mults[i] is not None:
                        x.mul_(mults[i])
                    x = x.view(q, n)
                    if channels is not None:  # inpainting first conv: the shared input channels
                        x = x.view(q, -1, inner[i])[:, :channels].reshape(q, width)
                    xs.append(x)
                sums.add(xs[0], xs[1], self._buf(2, q * width, False))
        return sums


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
    summer = _Summer(sources[:2], values, scale_of)
    keys = list(channels)
    samples, s_of = [], {}
    for i, key in enumerate(keys):
        if cancel is not None and cancel.cancelled:
            raise Cancelled()
        if i + 1 < len(keys):  # cold caches: the next key's reads start while this one is summed
            for src in sources[:2]:
                if isinstance(src, SafetensorsReader):
                    src.prefetch(keys[i + 1])
        ch = channels[key]
        s, stat = plan.method.from_sums(summer.sums(key, ch))
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
