"""The streaming merge: read key by key, compute in float32, write as it goes.

`merge()` validates the recipe against the inputs' headers (nothing is read before every setting is
known to be good), then streams through `pipeline.run`: the output's header is written first, since
every shape and dtype is known, and tensors follow as they are computed. Peak memory is a handful of
chunk buffers whatever the model size.

The inputs' sha256 (for the provenance metadata) come from the hash cache or, for a file not seen
before, from the merge's own reads (io/hashing.StreamHasher): no separate hashing pass. Since the
header goes first, it is written with placeholder digests and room to spare, and rewritten in place
with the real ones before the fsync and the atomic rename. A file's layout never depends on whether
its inputs' hashes were cached.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, MutableMapping

import torch

from . import pipeline
from .cosine_stats import cosine_range
from .engine_types import CancelToken, Progress
from ..io.atomic import atomic_write, check_output, shorten
from ..io.hashing import HashCache, StreamHasher
from ..io.models import open_model, read_shapes
from . import keymap
from ..io.safetensors_io import SafetensorsReader, SafetensorsWriter, header_bytes, itemsize
from .plan import MergePlan, build_plan
from .presets import PresetBook
from .provenance import file_metadata, models_for, placeholders
from .recipe import Recipe

log = logging.getLogger("lib_merge")

__all__ = ["merge", "plan_merge", "MergeResult", "CancelToken", "Progress"]


@dataclass
class MergeResult:
    output: str | None
    state_dict: MutableMapping[str, torch.Tensor] | None
    metadata: dict[str, str]
    plan: MergePlan
    hashes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    sha256: str | None = None  # the output file's, from the bytes as written (`hash_output`), else None


def plan_merge(recipe: Recipe, presets: PresetBook | None = None) -> MergePlan:
    """Read the inputs' headers and build the plan (no tensor is read): validates everything."""
    heads = [read_shapes(p) for p in recipe.models]
    heads = keymap.apply_to_headers(recipe, heads)
    plan = build_plan(recipe, [h for h, _ in heads], [m for _, m in heads], presets)
    keymap.check_plan(recipe, heads)
    return plan


def merge(recipe: Recipe, output: str | MutableMapping[str, torch.Tensor] | None = None, *,
          overwrite: bool = False, progress: Progress | None = None, cancel: CancelToken | None = None,
          hash_cache: HashCache | None = None, presets: PresetBook | None = None,
          hash_models: bool = True, key_map_name: str | None = None, hash_output: bool = False) -> MergeResult:
    """Merge as the recipe says, into a file (`output` a path), a dict (`output` a mapping, e.g. to
    load into a running webui) or a new dict (`output` None). `key_map_name`: the map's name to record
    when it differs from its file's (replay found the recorded map under another name).
    `hash_output`: the output file's sha256 in `MergeResult.sha256`, computed from the bytes as they
    are written (the caller stores it where it belongs: the REST route, once the webui lists the file). That needs the header's final bytes first: when the inputs'
    digests are known up front (hash cache, the webui's cache) it is; when one comes from the merge's
    own reads, the header is rewritten at the end and `sha256` is None (hash the file then)."""
    t0 = time.perf_counter()
    to_file = isinstance(output, str)
    if to_file:
        output = shorten(output)
        check_output(output, overwrite, recipe.models)
    plan = plan_merge(recipe, presets)
    recipe = plan.recipe
    n = plan.method.n_models
    paths = list(recipe.models[:n])
    size = sum(math.prod(k.shape) * itemsize(k.out_dtype) for k in plan.keys)
    if to_file:  # before hashing: the output's size is known from the headers
        check_output(output, overwrite, paths, size)
    metadata_of = dict(zip(paths, plan.metadata))
    recorded = plan.recorded()
    hashing = _Hashing(paths, hash_cache or HashCache(), progress, recipe) if hash_models else None
    sources = keymap.open_sources(recipe, paths, hashing.open if hashing else open_model,
                                  hashing.known if hashing else [], recorded, key_map_name)

    qmeta = plan.metadata[0].get("_quantization_metadata")
    keep_qmeta = bool(qmeta) and any(k.scale_for for k in plan.keys)  # a scaled output keeps A's layer formats

    def metadata(hashes: list[str]) -> dict[str, str]:
        if not hash_models:
            meta = file_metadata("merge", {**recorded, "model_hashes": []}, {})
        else:
            meta = file_metadata("merge", {**recorded, "model_hashes": hashes}, models_for(paths, hashes, metadata_of))
        if keep_qmeta:
            meta["_quantization_metadata"] = qmeta
        return meta

    out_sha: str | None = None
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)  # measured: on a shared 2-core box one intra-op thread is fastest
    try:
        ctx_stats = cosine_range(plan, sources, progress, cancel) if plan.method.needs_stats else None
        if to_file:
            entries = [(k.key, k.out_dtype, k.shape) for k in plan.keys]
            with atomic_write(output, overwrite, inputs=paths, size=size) as f:
                # placeholders for the digests: the real ones never make the header longer
                # (provenance.placeholders), and the header is padded to the size written first.
                # Digests all known up front go in at once, padded to that same size: the same bytes
                # the rewrite would leave, and a header final from the start (see hash_output).
                first = metadata(placeholders(len(paths)))
                known = hashing.known if hashing else []
                if hashing and all(k is not None for k in known):
                    room = len(header_bytes(entries, first)[0])
                    writer = SafetensorsWriter(f, entries, metadata(list(known)), room, hash_output=hash_output)
                else:
                    writer = SafetensorsWriter(f, entries, first, hash_output=hash_output and not hashing)
                pipeline.run(plan, sources, pipeline.FileSink(writer), ctx_stats, progress, cancel)
                writer.finish()
                hashes = hashing.finish() if hashing else []
                meta = metadata(hashes)
                if hash_models:
                    writer.rewrite_metadata(meta)  # before atomic_write's fsync and rename
                out_sha = writer.sha256()
            sd = None
        else:
            sd = output if output is not None else {}
            pipeline.run(plan, sources, pipeline.DictSink(sd), ctx_stats, progress, cancel)
            hashes = hashing.finish() if hashing else []
            meta = metadata(hashes)
    finally:
        torch.set_num_threads(threads_before)
        for s in sources:
            s.close()
    return MergeResult(output if to_file else None, sd, meta, plan, hashes, time.perf_counter() - t0, out_sha)


class _Hashing:
    """The inputs' sha256 for one merge: cached ones up front, the others from the merge's own reads.

    A file read through a SafetensorsReader gets a StreamHasher; others (pickles, loaded whole
    anyway) are hashed by the cache in a pass of their own. A key map is checked against model A's
    hash before anything is read, so with one A's hash is taken up front too."""

    def __init__(self, paths: list[str], cache: HashCache, progress: Progress | None, recipe: Recipe):
        self.paths, self.cache, self.progress = paths, cache, progress
        self.known: list[str | None] = [cache.lookup(p) for p in paths]
        if getattr(recipe, "key_map", "") and self.known and self.known[0] is None:
            self.known[0] = self._separate(paths[0])
        self.hashers: dict[int, StreamHasher] = {}
        self._next = 0

    def _separate(self, path: str) -> str:
        name = os.path.basename(path)
        cb = (lambda d, t: self.progress(d, t, f"hashing {name}")) if self.progress else None
        return self.cache.sha256(path, cb)

    def open(self, path: str):
        """open_model for the engine: the i-th call opens the i-th input."""
        i = self._next
        self._next += 1
        src = open_model(path)
        if self.known[i] is None:
            if isinstance(src, SafetensorsReader):
                # the same file twice shares nothing: each reader has its own hasher and cursor
                src.hasher = self.hashers[i] = StreamHasher(path)
            else:
                self.known[i] = self._separate(path)
        return src

    def finish(self) -> list[str]:
        """Every input's digest (reads what the merge skipped); new ones go into the cache."""
        out = []
        for i, path in enumerate(self.paths):
            h = self.hashers.get(i)
            if h is None:
                digest = self.known[i]
                out.append(digest if digest is not None else self._separate(path))
                continue
            digest = h.finish()
            if h.unchanged():
                self.cache.store(path, digest, h.st)
            log.debug("sha256 of %s from the merge's reads: %d bytes fed, %d read for hashing only",
                      os.path.basename(path), h.fed_bytes, h.gap_bytes)
            out.append(digest)
        return out
