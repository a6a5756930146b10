"""What is in a model file: architecture, variant, dtypes, blocks with key and parameter counts, recipe."""
from __future__ import annotations

import json
import math
import os
import re
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
        shown = _rounded(r["recipe"])  # for reading only: the file keeps the exact values
        lines += ["", "recipe:"] + ["  " + ln for ln in json.dumps(shown, indent=2, sort_keys=True).splitlines()[1:-1]] \
            if isinstance(shown, dict) else ["", f"recipe: {shown}"]
    if r["models"]:
        lines += ["", "models:"] + [f"  {label}: {name} [{h[:10]}]" for label, name, h in _ordered_models(r)]
    return "\n".join(lines)


_LONG = re.compile(r"-?\d+\.\d{7,}(?:[eE][-+]?\d+)?")  # a float written with many digits


def _rounded(v: Any) -> Any:
    """Floats to 6 significant digits (0.9166666666666666 -> 0.916667), for display."""
    if isinstance(v, float):
        return float(f"{v:.6g}")
    if isinstance(v, dict):
        return {k: (_LONG.sub(lambda m: f"{float(m.group()):.6g}", x) if k.endswith("_blocks") and isinstance(x, str)
                    else _rounded(x)) for k, x in v.items()}
    if isinstance(v, list):
        return [_rounded(x) for x in v]
    return v


def _ordered_models(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(A/B/C, name, hash) in the recipe's order of models (by hash, then name); others after, by name."""
    models: dict = r["models"] or {}
    recipe = r["recipe"] if isinstance(r["recipe"], dict) else {}
    order = [h for h in recipe.get("model_hashes") or [] if h in models]
    names = list(recipe.get("models") or [])
    if not order:
        by_name = {v.get("name"): h for h, v in models.items()}
        order = [by_name[n] for n in names if n in by_name]
    order += sorted((h for h in models if h not in order), key=lambda h: str(models[h].get("name")))
    labels = "ABC"
    return [(labels[i] if i < 3 else str(i + 1), str(models[h].get("name")), h) for i, h in enumerate(order)]


def _numel(shape) -> int:
    return math.prod(shape)
