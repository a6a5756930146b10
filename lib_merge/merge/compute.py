"""The compute step of the merge stream: one job's input tensors (source dtypes) into its output.

Elementwise methods see flat float32 slices of cache size (SLICE); columnwise ones (cosine), slices of
whole rows; others, whole tensors in their own shapes. Inputs already in the output's 16-bit dtype go
through the method's fused kernel where it has one; fp8 inputs are widened by fp8_codec and, on 2+
cores, a chunk's second half is computed on the other core.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..methods import KeyContext, MergeMethod
from ..methods.finite import finite_or_stop
from .fp8_codec import Fp8Decoder
from .plan import KeyPlan, MergePlan

if TYPE_CHECKING:
    from .cosine_stats import CosineStats

SLICE = 1 << 18  # elements per convert/merge/cast step


@dataclass
class Job:
    kp: KeyPlan
    first: int
    count: int
    whole: bool  # the whole tensor in one piece (its shape matters), not a flat chunk


def row_step(kp: KeyPlan, elements: int) -> int:
    """Elements in a chunk of about `elements` made of whole rows of the key (columnwise methods)."""
    ncols = math.prod(kp.shape[1:]) if kp.shape else 1
    return max(1, elements // max(ncols, 1)) * ncols


class _Scratch:
    """What one compute thread reuses for every slice."""

    def __init__(self, n: int):
        self.f32 = [torch.empty(SLICE, dtype=torch.float32) for _ in range(n)]
        self.fp8 = Fp8Decoder(SLICE)
        self.index = torch.empty(SLICE, dtype=torch.int32)  # fp8 pair lookups (_lookup)
        self.index2 = torch.empty(SLICE, dtype=torch.int32)

    def grow(self, n: int) -> None:
        if n > self.f32[0].numel():
            self.f32 = [torch.empty(n, dtype=torch.float32) for _ in self.f32]
            self.fp8 = Fp8Decoder(n)


class _Compute:
    """Turns one job's input tensors (source dtypes) into its output (out dtype), in place."""

    def __init__(self, plan: MergePlan, n: int, stats: "CosineStats | None",
                 scales: list[dict[str, float]] | None = None, pool: ThreadPoolExecutor | None = None):
        self.scales = scales or [{}] * n  # fp8 scaled inputs: {scale key: value} per source
        self.new_scales: dict[str, float] = {}  # weight key -> the scale its fp8 output was written with
        self.method: MergeMethod = plan.method
        self.arch_id = plan.arch.id
        self.adjust = plan.adjust
        self.device = torch.device(plan.recipe.device)
        self.lo, self.hi = (stats.lo, stats.hi) if stats else (None, None)
        self.columns = stats.s if stats else {}  # columnwise methods: each merged key's s
        self._ctx: KeyContext | None = None
        # one scratch set per compute thread: float32 copies of the inputs and the fp8 decoder's
        self.scratch = [_Scratch(n) for _ in range(2 if pool is not None else 1)]
        self.pool = pool
        self.tables: dict[tuple, torch.Tensor] = {}  # pairwise methods on fp8: (weights, dtypes) -> table

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
        same = all(t.dtype == out.dtype for t in ts) and not any(job.kp.scales)
        # a convex combination of inputs of the output's own dtype cannot leave its range (the float32
        # math has ample headroom over float16/bfloat16/fp8): the NaN/inf check would find nothing
        # the inputs did not have (it cost ~15% of the math, issue 12), and fp8 needs no clamp
        convex = same and method.convex(w)
        # inputs already in the output's 16-bit dtype: one fused kernel over the whole chunk where the
        # method has one (no float32 scratch: the chunk is read once and written once)
        if same and out.dtype in (torch.float16, torch.bfloat16) and method.merge_native(*ts, *pad, w, ctx, out):
            if not convex:
                finite_or_stop(job.kp.key, out, ts)
            return
        step, rows = SLICE, None
        if ctx.column is not None:  # columnwise: slices of whole rows, shaped so k broadcasts over them
            step, rows = row_step(job.kp, SLICE), job.kp.shape[1:]
            for sc in self.scratch:
                sc.grow(step)  # one row longer than a slice: rare, grown once
        work, args = self._range, (job, ts, out, ctx, pad, convex, step, rows)
        if method.pairwise and same and len(ts) == 2 and rows is None and out.element_size() == 1:
            # fp8 weight sum: merge() on all 65536 input pairs once per weight, then one lookup per
            # element: the same bits as the slices below (the table is made by them), ~40% less CPU
            work, args = self._lookup, (ts, out, self._table(job, ts[0].dtype, out.dtype, ctx, pad, convex))
        parts = [(0, job.count)]
        if self.pool is not None and job.count >= 2 * step and any(Fp8Decoder.handles(t.dtype) for t in ts):
            # fp8 decoding and encoding are CPU-bound: the second half of the chunk on the other core
            half = (job.count // 2 + step - 1) // step * step
            parts = [(0, half), (half, job.count)]
        if len(parts) == 1:
            work(*args, 0, job.count, self.scratch[0])
            return
        other = self.pool.submit(work, *args, *parts[1], self.scratch[1])
        try:
            work(*args, *parts[0], self.scratch[0])
        finally:
            other.result()  # waits, and raises what the other half raised

    def _table(self, job: Job, in_dtype: torch.dtype, out_dtype: torch.dtype, ctx: KeyContext, pad: list,
               convex: bool) -> torch.Tensor:
        """The output byte for every (A byte, B byte) pair at index A·256 + B, cached per weights."""
        key = (job.kp.weights, in_dtype, out_dtype, convex)
        table = self.tables.get(key)
        if table is None:
            codes = torch.arange(1 << 16, dtype=torch.int32)
            pair = [(codes // 256).to(torch.uint8).view(in_dtype), (codes % 256).to(torch.uint8).view(in_dtype)]
            table = torch.empty(1 << 16, dtype=out_dtype)
            # through the slices themselves; their NaN check cannot fire here (NaN codes are inputs)
            self._range(job, pair, table, ctx, pad, convex, SLICE, None, 0, 1 << 16, self.scratch[0])
            if len(self.tables) >= 256:  # MBW with many distinct weights: keep the newest
                self.tables.pop(next(iter(self.tables)))
            self.tables[key] = table = table.view(torch.uint8)
        return table

    def _lookup(self, ts: list[torch.Tensor], out: torch.Tensor, table: torch.Tensor, start: int, stop: int,
                scratch: "_Scratch") -> None:
        a, b, o = ts[0].view(torch.uint8), ts[1].view(torch.uint8), out.view(torch.uint8)
        for s in range(start, stop, SLICE):
            m = min(SLICE, stop - s)
            i, j = scratch.index[:m], scratch.index2[:m]
            i.copy_(a[s:s + m])
            j.copy_(b[s:s + m])
            torch.add(j, i, alpha=256, out=i)  # A·256 + B in one pass (exact: at most 65535)
            torch.index_select(table, 0, i, out=o[s:s + m])

    def _range(self, job: Job, ts: list[torch.Tensor], out: torch.Tensor, ctx: KeyContext, pad: list,
               convex: bool, step: int, rows: tuple[int, ...] | None, start: int, stop: int,
               scratch: "_Scratch") -> None:
        w, method = job.kp.weights, self.method
        out8 = out.dtype in _FP8
        for s in range(start, stop, step):
            m = min(step, stop - s)
            xs = [x[:m] for x in scratch.f32[:len(ts)]]
            for x, t in zip(xs, ts):
                if Fp8Decoder.handles(t.dtype):
                    scratch.fp8(x, t[s:s + m])
                else:
                    x.copy_(t[s:s + m])
            for i, sk in enumerate(job.kp.scales):
                if sk:
                    xs[i].mul_(self.scales[i][sk])
            if rows is not None:
                xs = [x.view(-1, *rows) for x in xs]
            r = method.merge(*xs, *pad, w, ctx).reshape(-1)
            if out8 and not convex:
                lim = torch.finfo(out.dtype).max  # fit(): clamped, not NaN, past the fp8 range
                r = r.clamp_(-lim, lim) if r.data_ptr() in {x.data_ptr() for x in xs} else r.clamp(-lim, lim)
                # checked in float32 before the cast (the same NaNs the fp8 values would have):
                # cheaper than widening the fp8 output again
                finite_or_stop(job.kp.key, r, [t[s:s + m] for t in ts])
            out[s:s + m].copy_(r)
            if not out8 and not convex:
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
