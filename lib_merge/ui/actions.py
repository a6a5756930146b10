"""What the tab's buttons do, without Gradio: merge and save / load / generate, restore, history.

Every function raises MergeError for a user mistake (the Gradio layer shows it) and returns plain
values. Progress is the engine's (done, total, what) callback.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..merge.engine import MergeResult, merge
from ..errors import MergeError
from ..io.atomic import clean_partials
from ..merge.identity import identity_of
from ..merge.provenance import model_name
from .form import FormValues, build_recipe, default_name, output_path
from .host import GenSettings, Host, Progress
from .state import TabState


@dataclass
class Outcome:
    status: str  # one markdown line (or a few) for the status box
    recipe_json: str = ""  # the recipe as recorded, pretty-printed
    images: list = field(default_factory=list)
    infotext: str = ""
    entry: dict[str, Any] | None = None  # the history entry written


class Throttled:
    """Pass progress on at most every `interval` seconds, but always a new phase and the end."""

    def __init__(self, fn: Progress, interval: float = 0.1, clock: Callable[[], float] = time.monotonic):
        self.fn, self.interval, self.clock = fn, interval, clock
        self._last = float("-inf")
        self._what: str | None = None

    def __call__(self, done: int, total: int, what: str) -> None:
        now = self.clock()
        if what != self._what or done >= total or now - self._last >= self.interval:
            self._what, self._last = what, now
            self.fn(done, total, what)


def _run_merge(host: Host, state: TabState, form: FormValues, output: str | None,
               progress: Progress | None) -> tuple[MergeResult, FormValues]:
    with state.running() as token:
        recipe = build_recipe(form, host, state.presets_file)
        path = output_path(form, recipe, host.output_dir()) if output == "file" else None
        result = merge(recipe, path, overwrite=form.overwrite, progress=progress, cancel=token,
                       hash_cache=state.hash_cache, presets=state.presets())
    drawn = result.plan.recipe.seed
    if form.seed < 0 and drawn is not None:
        form = form.replace(seed=drawn)  # the history keeps the seed that was drawn, so it replays
    return result, form


def _summary(verb: str, result: MergeResult, form: FormValues) -> str:
    plan = result.plan
    line = (f"{verb} — {plan.method.label} of {plan.arch.label}: {plan.n_merged} of {len(plan.keys)} keys merged "
            f"in {result.seconds:.1f} s.")
    notes = list(plan.notes)
    if plan.recipe.seed is not None:
        notes.append(f"random values drawn from seed {plan.recipe.seed}")
    return line + "".join(f"\n\n- {n}" for n in notes)


def _record(state: TabState, action: str, form: FormValues, result: MergeResult, output: str | None,
            status: str) -> Outcome:
    pretty = pretty_recipe(result.metadata.get("sd_merge_recipe"))
    try:
        entry = state.history.add(action, form, result.metadata, output, result.seconds)
    except MergeError as e:  # the merge itself worked: say both
        return Outcome(f"{status}\n\n⚠ {e}", pretty)
    return Outcome(status, pretty, entry=entry)


def merge_and_save(host: Host, state: TabState, form: FormValues, progress: Progress | None = None) -> Outcome:
    # the leftovers of killed merges in the output folder: removed (as every write does), and said here
    removed = clean_partials(host.output_dir())
    result, form = _run_merge(host, state, form, "file", progress)
    status = _summary(f"✓ Saved **{os.path.basename(result.output or '')}** in {os.path.dirname(result.output or '')}",
                      result, form)
    if removed:
        status += (f"\n\n- removed {len(removed)} unfinished file{'s' if len(removed) != 1 else ''} "
                   f"({sum(n for _, n in removed) / 1e9:.2f} GB) left by interrupted merges")
    return _record(state, "save", form, result, result.output, status)


def merge_and_load(host: Host, state: TabState, form: FormValues, progress: Progress | None = None) -> Outcome:
    if not host.can_load:
        raise MergeError(f"the {host.name} tab cannot load a model", "use Merge and save")
    result, form = _run_merge(host, state, form, None, progress)
    label = os.path.splitext(form.name.strip() or default_name(result.plan.recipe))[0]
    loaded = host.load_state_dict(result.state_dict, base_name=form.model_a, label=label,
                                  identity=identity_of(result.metadata, label))
    result.state_dict = None  # the host holds what it needs; do not keep a second copy alive
    status = _summary(f"✓ Loaded **{label}** (not saved)", result, form) + (f"\n\n{loaded}" if loaded else "")
    return _record(state, "load", form, result, None, status)


def merge_and_generate(host: Host, state: TabState, form: FormValues, settings: GenSettings,
                       progress: Progress | None = None) -> Outcome:
    if not host.can_generate:
        raise MergeError(f"the {host.name} tab cannot generate images", "use Merge and save")
    out = merge_and_load(host, state, form, progress)
    gen = host.generate(settings, progress)
    out.images, out.infotext = list(gen.images), gen.infotext
    out.status += f"\n\nGenerated {len(gen.images)} image{'s' if len(gen.images) != 1 else ''}."
    return out


_GEN_INTS = ("seed", "steps", "width", "height", "batch_size")
_GEN_FLOATS = ("cfg_scale",)


def gen_settings(text: str | None) -> GenSettings:
    """The txt2img settings javascript/blockmerge.js put into the hidden field, as JSON."""
    try:
        d = json.loads(text or "{}")
    except ValueError:
        d = None
    if not isinstance(d, dict):
        raise MergeError("could not read the txt2img tab's settings", "open the txt2img tab once, then try again")
    try:
        for k in _GEN_INTS:
            if k in d:
                d[k] = int(float(d[k]))
        for k in _GEN_FLOATS:
            if k in d:
                d[k] = float(d[k])
    except (TypeError, ValueError):
        raise MergeError(f"the txt2img setting {k} is not a number ({d[k]!r})",
                         "fix it in the txt2img tab, then try again") from None
    return GenSettings.from_dict(d)


def pretty_recipe(text: str | dict | None) -> str:
    if not text:
        return ""
    try:
        obj = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return str(text)
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False)


def match_models(names: list[str], host: Host) -> tuple[list[str], list[str]]:
    """Picker names for recorded model file names (matched by file name, then by name without
    extension); "" and a note for each one the host does not list."""
    index: dict[str, str] = {}
    for n in host.checkpoints():
        try:
            p = host.checkpoint_path(n)
        except MergeError:
            continue
        index.setdefault(os.path.basename(p).lower(), n)
        index.setdefault(model_name(p).lower(), n)
    found, notes = [], []
    for want in names:
        base = os.path.basename(str(want)).lower()
        hit = index.get(base) or index.get(os.path.splitext(base)[0])
        if not hit:
            notes.append(f"model {want} is not in the models list: pick it by hand")
        found.append(hit or "")
    return found, notes
