"""Back into the form: a merged file's recorded recipe, or a history entry.

Two recipe formats are understood: ours (`"type": "blockmerge"`) and the webui's own merger
(`"type": "webui"`, weighted sum / add difference with one multiplier).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from ..merge.adjust import parse_adjust
from ..errors import MergeError
from ..merge.inspect import describe
from ..methods import CALCS, MODES
from ..merge.provenance import TOOL
from .actions import match_models, pretty_recipe
from .form import ZERO_ADJUST, FormValues
from .host import Host


@dataclass
class FileRecipe:
    summary: str  # markdown: what the file is
    recipe: dict[str, Any] | None
    models: dict[str, Any] | None  # sd_merge_models
    recipe_json: str


def recipe_from_file(path: str) -> FileRecipe:
    if not path or not os.path.isfile(path):
        raise MergeError(f"model file not found: {path}", "pick or drop a .safetensors file")
    r = describe(path)
    dtypes = ", ".join(f"{k}×{v}" for k, v in r["dtypes"].items())
    summary = (f"**{r['file']}**: {r['label']}, {r['keys']} keys, {r['size_bytes'] / 2 ** 20:.1f} MiB, "
               f"dtypes {dtypes}.")
    recipe = r["recipe"]
    if recipe is None:
        summary += "\n\nThis file carries no merge recipe (it was not made by a merger that records one)."
    elif not isinstance(recipe, dict):
        summary += "\n\nIts recipe is not JSON; it is shown as it is."
    else:
        summary += f"\n\nRecipe written by **{recipe.get('type', 'unknown')}** {recipe.get('version', '')}."
    return FileRecipe(summary, recipe if isinstance(recipe, dict) else None, r["models"], pretty_recipe(recipe))


def form_from_recipe(recipe: Mapping[str, Any] | None, host: Host,
                     models: Mapping[str, Any] | None = None) -> tuple[FormValues, list[str]]:
    """The form a recorded recipe stands for, and notes on what could not be matched."""
    if not recipe:
        raise MergeError("there is no recipe to load", "pick a file merged by BlockMerge or the webui's merger")
    kind = recipe.get("type")
    if kind == "webui":
        return _from_webui(recipe, host, models or {})
    if kind != TOOL:
        raise MergeError(f"the recipe was written by {kind or 'an unknown tool'}, which the tab cannot load",
                         "read it above and set the form by hand")
    if recipe.get("kind", "merge") != "merge":
        raise MergeError(f"this file is a {recipe.get('kind')}, not a checkpoint merge",
                         "load it with the tool that made it")
    names, notes = match_models(list(recipe.get("models") or []), host)
    calc = recipe.get("calc") if recipe.get("calc") in CALCS else "normal"
    mode = recipe.get("mode") if recipe.get("mode") in MODES else "weight_sum"
    adjust, adj_note = _adjust(recipe.get("adjust") or "")
    notes += adj_note
    include, exclude = recipe.get("include") or "", recipe.get("exclude") or ""
    x_range = recipe.get("x_range") or (0.0, 1.0)
    seed = recipe.get("seed")
    d = {
        "model_a": names[0] if names else "", "model_b": names[1] if len(names) > 1 else "",
        "model_c": names[2] if len(names) > 2 else "", "mode": mode, "calc": calc,
        "alpha": recipe.get("alpha"), "beta": recipe.get("beta"), "gamma": recipe.get("gamma"),
        "alpha_blocks": recipe.get("alpha_blocks") or "", "beta_blocks": recipe.get("beta_blocks") or "",
        "elemental": recipe.get("elemental") or "",
        "select": "include" if include else "exclude" if exclude else "none", "select_text": include or exclude,
        "seed": -1 if seed is None else seed, "x_low": x_range[0], "x_high": x_range[1],
        "dtype": recipe.get("dtype") or "keep", "prune": recipe.get("prune", False),
        "merge_vae": recipe.get("merge_vae", False), "adjust": adjust, "key_map": recipe.get("key_map") or "",
    }
    return FormValues.from_dict(d), notes


def _adjust(text: str) -> tuple[tuple[float, ...], list[str]]:
    if not text.strip():
        return ZERO_ADJUST, []
    try:
        return parse_adjust(text).values, []
    except MergeError as e:
        return ZERO_ADJUST, [f"adjust {text!r} was not loaded: {e}"]


_WEBUI_METHODS = {"Weighted sum": "weight_sum", "Add difference": "add_difference"}


def _from_webui(recipe: Mapping[str, Any], host: Host, models: Mapping[str, Any]) -> tuple[FormValues, list[str]]:
    method = _WEBUI_METHODS.get(recipe.get("interp_method", ""))
    if method is None:
        raise MergeError(f"the webui merge method {recipe.get('interp_method')!r} has no equivalent here",
                         "read the recipe above and set the form by hand")
    hashes = [recipe.get(k) for k in ("primary_model_hash", "secondary_model_hash", "tertiary_model_hash")]
    n = 2 if method == "weight_sum" else 3
    names = []
    for h in hashes[:n]:
        m = models.get(h) if h else None
        names.append((m or {}).get("name") or "")
    found, notes = match_models([x for x in names if x], host)
    it = iter(found)
    slots = [next(it) if x else "" for x in names]
    for i, x in enumerate(names):
        if not x:
            notes.append(f"model {'ABC'[i]} is not named in the file: pick it by hand")
    d = {"model_a": slots[0], "model_b": slots[1], "model_c": slots[2] if n == 3 else "",
         "mode": method, "calc": "normal", "alpha": recipe.get("multiplier", 0.5),
         "dtype": "fp16" if recipe.get("save_as_half") else "keep"}
    return FormValues.from_dict(d), notes


def form_from_history(entry: Mapping[str, Any], host: Host) -> tuple[FormValues, list[str]]:
    """A past merge's settings as they were typed, with models the host no longer lists cleared."""
    form = FormValues.from_dict(entry.get("settings") or {})
    listed = set(host.checkpoints())
    notes, fix = [], {}
    for slot in ("model_a", "model_b", "model_c"):
        name = getattr(form, slot)
        if name and name not in listed:
            fix[slot] = ""
            notes.append(f"model {name} is no longer in the models list: pick it by hand")
    return (form.replace(**fix) if fix else form), notes
