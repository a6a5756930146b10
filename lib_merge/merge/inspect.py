"""What is in a model file: architecture, variant, dtypes, blocks with key and parameter counts, recipe."""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from typing import Any

from ..arch import Component, detect
from ..io.models import read_shapes


def describe(path: str) -> dict[str, Any]:
    tensors, meta = read_shapes(path)
    info = detect({k: v.shape for k, v in tensors.items()}, os.path.basename(path))
    arch = info.arch
    blocks: dict[str, dict[str, int]] = {b: {"keys": 0, "params": 0} for b in arch.blocks}
    comps: Counter = Counter()
    other = 0
    for key, t in tensors.items():
        comp = arch.component(key)
        comps[comp.value] += t.numel
        block = arch.block_of(key)
        if comp is Component.VAE or block is None:
            other += 1
            continue
        blocks[block]["keys"] += 1
        blocks[block]["params"] += t.numel
    recipe = meta.get("sd_merge_recipe")
    try:
        recipe_obj = json.loads(recipe) if recipe else None
    except ValueError:
        recipe_obj = recipe
    return {
        "file": os.path.basename(path),
        "size_bytes": os.path.getsize(path),
        "architecture": arch.id,
        "label": info.label,
        "variant": info.variant,
        "pruned": info.pruned,
        "prediction": info.prediction,
        "in_channels": info.in_channels,
        "dtypes": dict(Counter(t.dtype for t in tensors.values())),
        "keys": len(tensors),
        "params": {k: v for k, v in comps.items()},
        "has_text_encoder": info.has_text_encoder,
        "has_vae": info.has_vae,
        "blocks": blocks,
        "keys_outside_blocks": other,
        "recipe": recipe_obj,
        "models": json.loads(meta["sd_merge_models"]) if "sd_merge_models" in meta else None,
    }


def format_report(r: dict[str, Any]) -> str:
    lines = [f"{r['file']}: {r['label']} ({r['architecture']}), {r['keys']} keys, "
             f"{r['size_bytes'] / 2 ** 30:.2f} GiB, dtypes {', '.join(f'{k}×{v}' for k, v in r['dtypes'].items())}",
             f"prediction: {r['prediction']}; text encoder: {'yes' if r['has_text_encoder'] else 'no'}; "
             f"VAE: {'yes' if r['has_vae'] else 'no'}",
             "params: " + ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in r["params"].items()),
             "", f"{'block':<6} {'keys':>6} {'params':>14}"]
    for b, v in r["blocks"].items():
        lines.append(f"{b:<6} {v['keys']:>6} {v['params']:>14,}")
    lines.append(f"(+{r['keys_outside_blocks']} keys outside the merge blocks: VAE, buffers)")
    if r["recipe"]:
        lines += ["", "recipe: " + json.dumps(r["recipe"], sort_keys=True)]
    if r["models"]:
        lines.append("models: " + ", ".join(f"{v.get('name')} [{k[:10]}]" for k, v in r["models"].items()))
    return "\n".join(lines)


def _numel(shape) -> int:
    return math.prod(shape)
