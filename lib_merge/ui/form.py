"""The tab's form as one frozen value, and the recipe it stands for.

`FormValues` holds ids (never labels); `from_ui` / `to_ui` convert the components' values in the
order of `UI_FIELDS` (+ the 8 adjust sliders). `build_recipe` turns a form into a `Recipe` and an
output path, raising MergeError for every mistake the tab can see before the engine does.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from ..merge.adjust import NAMES as ADJUST_NAMES
from ..errors import MergeError, RecipeError
from ..methods import resolve
from ..merge.provenance import model_name
from ..merge.recipe import DTYPES, Recipe
from . import labels
from .host import Host

SLOTS = ("A", "B", "C")
ZERO_ADJUST = (0.0,) * len(ADJUST_NAMES)


@dataclass(frozen=True)
class FormValues:
    model_a: str = ""  # picker names as the host lists them
    model_b: str = ""
    model_c: str = ""
    mode: str = "weight_sum"
    calc: str = "normal"
    alpha: float = 0.5
    beta: float = 0.25
    gamma: float = 0.3
    alpha_blocks: str = ""  # weight string or preset name, as typed
    beta_blocks: str = ""
    elemental: str = ""
    select: str = "none"  # none | include | exclude
    select_text: str = ""
    seed: int = -1  # < 0: draw one when random tokens need it (it is recorded)
    x_low: float = 0.0
    x_high: float = 1.0
    name: str = ""  # output file name; empty: made from the models
    dtype: str = "keep"
    overwrite: bool = False
    prune: bool = False
    merge_vae: bool = False
    key_map: str = ""  # a key map file name (pruned SDXL A), found next to model A or in the output folder
    adjust: tuple[float, ...] = field(default=ZERO_ADJUST)

    # --- dict form (history file): tolerant of missing, unknown and badly typed entries
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["adjust"] = list(self.adjust)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FormValues":
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in d or d[f.name] is None:
                continue
            kw[f.name] = _coerce(f.name, d[f.name], getattr(cls(), f.name))
        return cls(**kw)

    # --- component values, in UI_FIELDS order followed by the adjust sliders
    @classmethod
    def from_ui(cls, values: Sequence[Any]) -> "FormValues":
        n = len(UI_FIELDS)
        if len(values) != n + len(ADJUST_NAMES):
            raise ValueError(f"expected {n + len(ADJUST_NAMES)} form values, got {len(values)}")
        d = dict(zip(UI_FIELDS, values[:n]))
        for name, table, what in _LABELLED:
            d[name] = labels.to_id(table, d[name], what)
        d["adjust"] = list(values[n:])
        return cls.from_dict(d)

    def to_ui(self) -> list[Any]:
        d = self.to_dict()
        for name, table, _ in _LABELLED:
            d[name] = labels.to_label(table, d[name])
        for slot in ("model_a", "model_b", "model_c", "key_map"):
            d[slot] = d[slot] or None  # an empty picker
        return [d[k] for k in UI_FIELDS] + list(self.adjust)

    def replace(self, **kw: Any) -> "FormValues":
        return dataclasses.replace(self, **kw)


UI_FIELDS = tuple(f.name for f in dataclasses.fields(FormValues) if f.name != "adjust")
_LABELLED = (("mode", labels.MODE_LABELS, "merge mode"), ("calc", labels.CALC_LABELS, "calc mode"),
             ("select", labels.SELECT_LABELS, "include/exclude choice"), ("dtype", labels.DTYPE_LABELS, "dtype"))


def _coerce(name: str, value: Any, default: Any) -> Any:
    if name == "adjust":
        vals = [float(v or 0) for v in value] if isinstance(value, (list, tuple)) else []
        return tuple(vals) if len(vals) == len(ADJUST_NAMES) else ZERO_ADJUST
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, int):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return default
    if isinstance(default, float):
        try:
            v = float(value)
        except (TypeError, ValueError):
            return default
        return v if math.isfinite(v) else default
    return str(value)


def method_of(form: FormValues):
    """The merge method the form picks: a calc mode other than normal decides the mode itself."""
    return resolve(form.mode if form.calc == "normal" else None, form.calc)


def adjust_text(values: Iterable[float]) -> str:
    vals = [float(v) for v in values]
    return "" if not any(vals) else ",".join(_num(v) for v in vals)


def _num(v: float) -> str:
    return format(round(v, 6), "g")


def build_recipe(form: FormValues, host: Host, presets_file: str = "") -> Recipe:
    """The recipe of a form (models as file paths). Only the models the method uses are passed."""
    method = method_of(form)
    picked = [form.model_a, form.model_b, form.model_c]
    if not picked[0]:
        raise RecipeError("no model A is picked", "pick model A (the base model) in the first dropdown")
    needed = picked[:method.n_models]
    missing = [SLOTS[i] for i, p in enumerate(needed) if not p]
    if missing:
        raise RecipeError(f"{method.label} needs model {' and '.join(missing)}",
                          f"pick model {' and '.join(missing)}, or a mode that uses fewer models")
    paths = tuple(host.checkpoint_path(p) for p in needed)
    if form.dtype not in DTYPES:
        raise RecipeError(f"unknown dtype {form.dtype!r}", f"use one of {', '.join(DTYPES)}")
    if form.x_low > form.x_high:
        raise RecipeError(f"the X range runs from {form.x_low:g} down to {form.x_high:g}",
                          "make X low no larger than X high")
    sel = form.select_text.strip() if form.select != "none" else ""
    key_map = ""
    if form.key_map.strip():
        from ..merge.keymap import find_map
        key_map = find_map(form.key_map.strip(), map_folders(paths[0], host))
    return Recipe(
        models=paths, mode=form.mode if form.calc == "normal" else None, calc=form.calc,
        alpha=float(form.alpha), beta=float(form.beta), gamma=float(form.gamma),
        alpha_blocks=form.alpha_blocks.strip(), beta_blocks=form.beta_blocks.strip(),
        elemental=form.elemental, adjust=adjust_text(form.adjust),
        include=sel if form.select == "include" else "", exclude=sel if form.select == "exclude" else "",
        merge_vae=bool(form.merge_vae), dtype=form.dtype, seed=form.seed if form.seed >= 0 else None,
        x_range=(float(form.x_low), float(form.x_high)), prune=bool(form.prune), key_map=key_map,
        presets_file=presets_file if presets_file and os.path.isfile(presets_file) else "")


def map_folders(model_a_path: str, host: Host) -> list[str]:
    """Where the tab looks for key maps: next to model A, then in the output folder."""
    out = [os.path.dirname(os.path.abspath(model_a_path))]
    other = os.path.abspath(host.output_dir())
    return out if other in out else out + [other]


_BAD_NAME = re.compile(r"[\\/\x00]|^\.+$")


def output_path(form: FormValues, recipe: Recipe, folder: str) -> str:
    """Where "Merge and save" writes: the typed name (or one made from the models) in `folder`."""
    name = form.name.strip() or default_name(recipe)
    if _BAD_NAME.search(name):
        raise MergeError(f"output name {name!r} is not a plain file name",
                         "type a name without folders, e.g. my_merge (saved to the output folder)")
    stem, ext = os.path.splitext(name)
    if ext.lower() in (".ckpt", ".pt", ".pth", ".bin"):
        raise MergeError(f"the tab saves .safetensors files, not {ext}",
                         "drop the extension (or use the CLI's --ckpt for a legacy .ckpt)")
    if ext.lower() != ".safetensors":
        name += ".safetensors"
    return os.path.join(folder, name)


def default_name(recipe: Recipe) -> str:
    method = resolve(recipe.mode, recipe.calc)
    stems = [model_name(p) for p in recipe.models]
    return "_".join(stems + [method.id]) + ".safetensors"
