"""How alike two (or three) models are, block by block and element kind by element kind.

`compare([A, B, (C)])` streams once over the files, key by key in A's order, in chunks read into
reused buffers (the merge's reader: positioned reads, no mapping), and sums per cell
(MBW block × element kind) and per pair (A vs B, A vs C):
    a·b, |a|², |b|², |a−b|²   (float64 accumulation)
from which the cell's cosine similarity  a·b / (|a| |b|)  and relative L2 difference  |a−b| / |a|
follow: the cell is treated as one long vector of all its tensors (a big tensor weighs more than a
small one), the same way the key map scores a layer. Memory: a few chunk buffers, whatever the size.

Keys counted: float tensors in a merge block (BASE = text encoders, the VAE in its own row), present
in both files with the same shape. Others are left out and counted in `notes`.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..arch import Component, detect
from ..arch.kinds import kind_of, kinds_of
from ..errors import ArchitectureError, Cancelled, MergeError, ModelFileError
from ..io.models import open_model, read_shapes
from ..io.safetensors_io import SafetensorsReader, itemsize
from .engine_types import CancelToken, Progress

CHUNK = 1 << 21  # elements per read
FORMAT = "blockmerge-compare"
VAE_ROW = "VAE"
LABELS = "ABC"


@dataclass
class Stats:
    """Sums over the tensors of one cell; cosine and relative L2 follow from them."""
    dot: float = 0.0
    aa: float = 0.0
    bb: float = 0.0
    dd: float = 0.0
    params: int = 0
    keys: int = 0

    def add(self, other: "Stats") -> None:
        self.dot += other.dot
        self.aa += other.aa
        self.bb += other.bb
        self.dd += other.dd
        self.params += other.params
        self.keys += other.keys

    @property
    def cosine(self) -> float:
        if self.aa == 0.0 and self.bb == 0.0:
            return 1.0 if self.keys else math.nan  # two zero tensors point the same (no) way
        if self.aa == 0.0 or self.bb == 0.0:
            return 0.0
        return max(-1.0, min(1.0, self.dot / math.sqrt(self.aa * self.bb)))

    @property
    def rel_l2(self) -> float:
        if not self.keys:
            return math.nan
        if self.aa == 0.0:
            return 0.0 if self.dd == 0.0 else math.inf
        return math.sqrt(self.dd / self.aa)


@dataclass
class PairResult:
    label: str  # "A vs B"
    cells: dict[tuple[str, str], Stats] = field(default_factory=dict)  # (row, kind)
    rows: dict[str, Stats] = field(default_factory=dict)  # row -> all kinds together
    total: Stats = field(default_factory=Stats)

    def cell(self, row: str, kind: str) -> Stats:
        return self.cells.get((row, kind)) or Stats()


@dataclass
class Comparison:
    files: list[str]  # basenames, A first
    arch_id: str
    arch_label: str
    rows: tuple[str, ...]  # MBW blocks (+ VAE) that hold compared keys, in block order
    kinds: tuple[str, ...]  # element kinds that hold compared keys, in column order
    pairs: list[PairResult]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def title(self) -> str:
        return " | ".join(f"{LABELS[i]}: {n}" for i, n in enumerate(self.files))

    def to_json(self) -> dict[str, Any]:
        def stats(s: Stats) -> dict[str, Any]:
            return {"cosine": _num(s.cosine), "rel_l2": _num(s.rel_l2), "params": s.params, "keys": s.keys}
        return {
            "format": FORMAT, "version": 1, "architecture": self.arch_id, "label": self.arch_label,
            "files": {LABELS[i]: n for i, n in enumerate(self.files)},
            "blocks": list(self.rows), "kinds": list(self.kinds),
            "pairs": {p.label: {"cells": {r: {k: stats(p.cells[(r, k)]) for k in self.kinds if (r, k) in p.cells}
                                          for r in self.rows},
                                "blocks": {r: stats(p.rows[r]) for r in self.rows if r in p.rows},
                                "total": stats(p.total)} for p in self.pairs},
            "notes": list(self.notes), "seconds": round(self.seconds, 3),
        }


def _num(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else round(x, 8)


def _check_inputs(paths: list[str]) -> tuple[Any, list[dict]]:
    if not 2 <= len(paths) <= 3:
        raise MergeError(f"compare takes 2 or 3 models, got {len(paths)}", "give A B or A B C")
    heads, infos = [], []
    for p in paths:
        if not os.path.isfile(p):
            raise ModelFileError(f"model file not found: {p}", "check the path and the models folder")
        tensors, _ = read_shapes(p)
        heads.append(tensors)
        infos.append(detect({k: v.shape for k, v in tensors.items()}, os.path.basename(p)))
    a = infos[0]
    for i, info in enumerate(infos[1:], 1):
        if info.arch.id != a.arch.id:
            raise ArchitectureError(
                f"{os.path.basename(paths[i])} ({LABELS[i]}) is {info.arch.label} but "
                f"{os.path.basename(paths[0])} (A) is {a.arch.label}: they cannot be compared block by block",
                f"compare models of one architecture ({LABELS[i]} must be {a.arch.label} too)")
    return a.arch, heads


def _pruned_note(heads: list[dict], paths: list[str]) -> str | None:
    """A pruned SDXL against a full one without a key map: same-named layers are not the same layers."""
    from .keymap import require_same_layers
    try:
        require_same_layers(heads, [os.path.basename(p) for p in paths])
    except MergeError as e:
        return f"{e.problem}: layers were compared by name; pass --key-map MAP.json to compare the layers they came from"
    return None


def _row_of(arch, key: str) -> str | None:
    if arch.component(key) is Component.VAE:
        return VAE_ROW
    return arch.block_of(key)


def _read(src, key: str, buf: bytearray, first: int, count: int) -> torch.Tensor:
    if isinstance(src, SafetensorsReader):
        return src.read_tensor(key, memoryview(buf), first, count)
    return src.read_tensor(key, memoryview(b""), first, count)


def compare(paths: list[str], progress: Progress | None = None, cancel: CancelToken | None = None,
            key_map: str | None = None) -> Comparison:
    """Compare A with B (and C): one streaming pass, sums per (block, kind) and pair. With a key map
    (A a pruned SDXL), B and C are read through it, as a merge does."""
    t0 = time.perf_counter()
    paths = list(paths)
    arch, heads = _check_inputs(paths)
    km = None
    if key_map:
        from . import keymap
        km = keymap.load(key_map)
        heads = heads[:1] + [keymap.remap_names(h, km) for h in heads[1:]]
    layer_note = _pruned_note(heads, paths) if km is None else None
    a_head = heads[0]
    pairs = [PairResult(f"A vs {LABELS[i]}") for i in range(1, len(paths))]
    plan: list[tuple[str, str, str, list[int]]] = []  # key, row, kind, indices of the others that have it
    missing = [0] * len(paths)
    reshaped: list[str] = []
    for key, info in a_head.items():
        row = _row_of(arch, key)
        if row is None or not info.is_float:
            continue
        have = []
        for i in range(1, len(paths)):
            other = heads[i].get(key)
            if other is None:
                missing[i] += 1
            elif other.shape != info.shape or not other.is_float:
                reshaped.append(key)
            else:
                have.append(i)
        if have:
            plan.append((key, row, kind_of(key, arch.id), have))
    sources = [open_model(p) for p in paths]
    for s, h in zip(sources[1:], heads[1:]):
        s.tensors = h  # through the key map (or the same header)
    widest = max((itemsize(h[k].dtype) for h in heads for k in h), default=4)
    bufs = [bytearray(CHUNK * widest) for _ in paths]
    total_elems = sum(a_head[k].numel for k, _, _, _ in plan) or 1
    done = 0
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the merge: measured on SD1.5 (2 cores, loaded box) 44 s vs 135 s wall
    try:
        for n, (key, row, kind, have) in enumerate(plan):
            if cancel is not None and cancel.cancelled:
                raise Cancelled()
            if n + 1 < len(plan):
                for i in (0, *plan[n + 1][3]):
                    if isinstance(sources[i], SafetensorsReader):
                        sources[i].prefetch(plan[n + 1][0])
            numel = a_head[key].numel
            sums = {i: Stats(params=numel, keys=1) for i in have}
            for first in range(0, numel, CHUNK):
                count = min(CHUNK, numel - first)
                a = _read(sources[0], key, bufs[0], first, count).to(torch.float64)
                aa = float(torch.dot(a, a))
                for i in have:
                    b = _read(sources[i], key, bufs[i], first, count).to(torch.float64)
                    s = sums[i]
                    s.aa += aa
                    s.dot += float(torch.dot(a, b))
                    s.bb += float(torch.dot(b, b))
                    d = b - a  # not in place: a float64 .ckpt tensor is the model's own memory
                    s.dd += float(torch.dot(d, d))
                done += count
                if progress:
                    progress(done, total_elems, "comparing")
            for i, s in sums.items():
                p = pairs[i - 1]
                p.cells.setdefault((row, kind), Stats()).add(s)
                p.rows.setdefault(row, Stats()).add(s)
                p.total.add(s)
    finally:
        torch.set_num_threads(threads_before)
        for s in sources:
            s.close()
    row_order = (*arch.blocks, VAE_ROW)
    used_rows = {r for p in pairs for r, _ in p.cells}
    used_kinds = {k for p in pairs for _, k in p.cells}
    notes = [layer_note] if layer_note else []
    for i in range(1, len(paths)):
        if missing[i]:
            notes.append(f"{missing[i]} keys of A are not in {LABELS[i]} ({os.path.basename(paths[i])}) and are left out")
    if reshaped:
        notes.append(f"{len(reshaped)} keys have another shape than in A and are left out (first: {reshaped[0]})")
    return Comparison([os.path.basename(p) for p in paths], arch.id, arch.label,
                      tuple(r for r in row_order if r in used_rows),
                      tuple(k for k in kinds_of(arch.id) if k in used_kinds), pairs, notes,
                      time.perf_counter() - t0)


def _cell_text(x: float, digits: int) -> str:
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}"


def format_table(cmp: Comparison) -> str:
    """The comparison as plain-text tables: per pair, cosine then relative L2 (blocks × kinds + all)."""
    lines = [f"{cmp.arch_label}: {cmp.title}"]
    cols = (*cmp.kinds, "all")
    for p in cmp.pairs:
        for name, attr, digits in (("cosine similarity (1 = same)", "cosine", 4),
                                   ("relative L2 difference |A-x|/|A| (0 = same)", "rel_l2", 4)):
            lines += ["", f"{p.label}: {name}", f"{'block':<6}" + "".join(f"{c:>9}" for c in cols)]
            for r in cmp.rows:
                vals = [getattr(p.cells[(r, k)], attr) if (r, k) in p.cells else math.nan for k in cmp.kinds]
                vals.append(getattr(p.rows[r], attr) if r in p.rows else math.nan)
                lines.append(f"{r:<6}" + "".join(f"{_cell_text(v, digits):>9}" for v in vals))
            lines.append(f"{'total':<6}" + " " * 9 * len(cmp.kinds) + f"{_cell_text(getattr(p.total, attr), digits):>9}")
    lines += [f"note: {n}" for n in cmp.notes]
    return "\n".join(lines)
