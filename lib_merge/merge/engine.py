"""The streaming merge: read key by key, compute in float32, write as it goes.

`merge()` validates the recipe against the inputs' headers (nothing is read before every setting is
known to be good), hashes the inputs for the provenance metadata, then streams through
`pipeline.run`: the output's header is written first, since every shape and dtype is known, and
tensors follow as they are computed. Peak memory is a handful of chunk buffers whatever the model size.
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
from ..io.hashing import HashCache
from ..io.models import open_model, read_shapes
from . import keymap
from ..io.safetensors_io import SafetensorsWriter, itemsize
from .plan import MergePlan, build_plan
from .presets import PresetBook
from .provenance import file_metadata, models_metadata
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
          hash_models: bool = True) -> MergeResult:
    """Merge as the recipe says, into a file (`output` a path), a dict (`output` a mapping, e.g. to
    load into a running webui) or a new dict (`output` None)."""
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
    hashes: list[str] = []
    models: dict[str, Any] = {}
    if hash_models:
        cache = hash_cache or HashCache()
        for p in paths:  # a new file is hashed once, then the cache answers
            cache.sha256(p, (lambda d, t, name=os.path.basename(p): progress(d, t, f"hashing {name}"))
                         if progress else None)
        models, hashes = models_metadata(paths, cache, dict(zip(paths, plan.metadata)))
    recorded = plan.recorded()
    recorded["model_hashes"] = hashes
    sources = keymap.open_sources(recipe, paths, open_model, hashes, recorded)
    meta = file_metadata("merge", recorded, models)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)  # measured: on a shared 2-core box one intra-op thread is fastest
    try:
        ctx_stats = cosine_range(plan, sources, progress, cancel) if plan.method.needs_stats else None
        if to_file:
            entries = [(k.key, k.out_dtype, k.shape) for k in plan.keys]
            with atomic_write(output, overwrite, inputs=paths, size=size) as f:
                writer = SafetensorsWriter(f, entries, meta)
                pipeline.run(plan, sources, pipeline.FileSink(writer), ctx_stats, progress, cancel)
                writer.finish()
            sd = None
        else:
            sd = output if output is not None else {}
            pipeline.run(plan, sources, pipeline.DictSink(sd), ctx_stats, progress, cancel)
    finally:
        torch.set_num_threads(threads_before)
        for s in sources:
            s.close()
    return MergeResult(output if to_file else None, sd, meta, plan, hashes, time.perf_counter() - t0)
