"""Axes "Merge alpha" and "Merge MBW" for the webui's own X/Y/Z plot (WEBUI.md §7), A1111 and Forge.

Registered from `on_before_ui`, which runs before every UI build (and on every reload, when
xyz_grid.py starts again with a fresh `axis_options`), so they are added each time and never twice.
Labels are stable: the grid's infotext stores them as `X Type`.

What a cell does: `apply` records the axis value on the cell's copy of `p`; once every merge axis of
the plot has its value, the recipe (the merge tab's last merge, from its history) gets them
(alpha, and the MBW string as alpha block weights) and is merged into memory and loaded in place
into the running model, the way the tab's "Merge and load" does (the webui's `queue_lock` is
already held by the generation, so the adapter is called directly). Consecutive cells with the same
values reuse what is loaded: the axes cost 0.9 and 0.91, so the XYZ script puts them in the outer
loops, and a value is merged once, not once per cell. Only one merged model is ever held (one
buffer, refilled in place), so memory stays flat however many values the axes have.

The plot's session lives on the `p` the XYZ script runs (its cells are shallow copies, so they share
it): `confirm`, which XYZ calls once per axis with that `p` before the first cell, creates it and
hooks `p.close()`, which the webui always calls after the whole plot; that restores the selected
checkpoint and frees the merge buffer.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Sequence

from ..errors import Cancelled, MergeError, ParseError
from ..ui.form import FormValues
from ..ui.xy_merge import ReusingStateDict, cell_recipe, settings_label
from ..xy import MergeSettings
from ..xy.text import number, split_values

log = logging.getLogger("lib_merge")

ALPHA_LABEL = "Merge alpha"
MBW_LABEL = "Merge MBW"
# Below the checkpoint axes' 1.0, above everything cheap, so merges run in the outer loops. The two
# differ so that XYZ never sees a tie between them (a tie puts the cheap Z axis outermost, and every
# merge would run once per Z value instead of once).
COSTS = {ALPHA_LABEL: 0.9, MBW_LABEL: 0.91}
SESSION_ATTR = "blockmerge_xyz"  # on the plot's p, shared by XYZ's shallow copies
VALUES_ATTR = "blockmerge_xyz_values"  # on one cell's copy only
XYZ_MODULE = "xyz_grid.py"  # the webui names a script module after its file (WEBUI.md §1)


# --- registration -----------------------------------------------------------------------------------

def find_xyz_module() -> ModuleType | None:
    """The loaded xyz_grid.py, the newest if the scripts were loaded more than once."""
    from modules import scripts
    for data in reversed(scripts.scripts_data):
        if data.script_class.__module__ == XYZ_MODULE and data.module is not None:
            return data.module
    return None


def axis_options(xyz: ModuleType) -> list[Any]:
    return [
        xyz.AxisOption(ALPHA_LABEL, float, apply_value(ALPHA_LABEL), confirm=confirm_values(ALPHA_LABEL),
                       cost=COSTS[ALPHA_LABEL]),
        xyz.AxisOption(MBW_LABEL, str, apply_value(MBW_LABEL), format_value=format_mbw,
                       confirm=confirm_values(MBW_LABEL), cost=COSTS[MBW_LABEL], prepare=prepare_mbw),
    ]


def on_before_ui() -> None:
    """Add the axes to the XYZ plot's list, unless a label is already there (callbacks may run twice)."""
    xyz = find_xyz_module()
    if xyz is None:
        log.info("BlockMerge: the X/Y/Z plot script is not loaded; no merge axes added")
        return
    have = {getattr(o, "label", None) for o in xyz.axis_options}
    for opt in axis_options(xyz):
        if opt.label not in have:
            xyz.axis_options.append(opt)


def register_callbacks(script_callbacks: Any) -> None:
    """Called from scripts/blockmerge_tab.py: the same function object, removed first, so reloading
    the script bodies does not register it twice."""
    remove = getattr(script_callbacks, "remove_callbacks_for_function", None)
    if remove is not None:
        remove(on_before_ui)
    script_callbacks.on_before_ui(on_before_ui)


# --- values -------------------------------------------------------------------------------------------

def _weight_token(text: str) -> bool:
    t = text.strip()
    if t.upper() in ("R", "U", "X"):
        return True
    try:
        number(t, "")
    except ParseError:
        return False
    return True


def prepare_mbw(text: str) -> list[str]:
    """The MBW values of the XYZ box. The webui would split a str axis at every comma; here:
    one value per line, or values separated by commas with weight strings in double quotes, or a
    single line of only numbers (a weight string typed without quotes) as one value."""
    body = (text or "").strip()
    if not body:
        return []
    tokens = split_values(body, f"{MBW_LABEL} values")
    if "\n" not in body and len(tokens) > 1 and '"' not in body and all(_weight_token(t.text) for t in tokens):
        return [body]
    return [t.text for t in tokens]


def short(x: Any, n: int = 60) -> str:
    flat = " ".join(str(x).split())
    return flat if len(flat) <= n else flat[:n - 3] + "..."


def format_mbw(p: Any, opt: Any, x: Any) -> str:
    return f"{opt.label}: {short(x)}"


# --- the recipe ---------------------------------------------------------------------------------------

def recipe_form() -> FormValues:
    """The form the axes merge with: the merge tab's last merge (save, load or generate), as its
    history in the data folder (Settings → BlockMerge) records it, with every setting as typed."""
    from ..ui.history import History
    from . import settings
    entries = History(settings.data_dir()).entries(limit=1)
    if not entries or not entries[0].get("settings"):
        raise MergeError("the X/Y/Z plot's Merge axes have no recipe yet",
                         "merge once in the Block Merge tab (Merge and load, generate or save): its last merge "
                         "is the recipe the axes change")
    return FormValues.from_dict(entries[0]["settings"])


def _adapter() -> ModuleType:
    from .detect import is_forge, is_neo
    if is_neo():
        from . import neo as adapter
    elif is_forge():
        from . import forge as adapter
    else:
        from . import a1111 as adapter
    return adapter


class _Interrupted:
    """A CancelToken over the webui's Interrupt button."""

    @property
    def cancelled(self) -> bool:
        from modules import shared
        return bool(shared.state.interrupted)


@dataclass
class Session:
    """One X/Y/Z plot: its recipe, the merge axes in use, what is loaded, the one merge buffer."""
    form: FormValues
    axes: set[str] = field(default_factory=set)
    loaded: MergeSettings | None = None
    label: str | None = None
    buffer: ReusingStateDict = field(default_factory=ReusingStateDict)
    merges: int = 0

    def settings(self, values: dict[str, Any]) -> MergeSettings:
        alpha = values.get(ALPHA_LABEL)
        mbw = values.get(MBW_LABEL)
        return MergeSettings(alpha=None if alpha is None else float(alpha), alpha_blocks=mbw or None)

    def recipe(self, s: MergeSettings) -> Any:
        from ..ui.state import PRESETS_FILE
        from . import settings
        from .host import WebuiHost
        presets_file = os.path.join(settings.data_dir(), PRESETS_FILE)
        return cell_recipe(self.form, s, WebuiHost(), presets_file)

    def check(self, label: str, values: Sequence[Any]) -> None:
        """Every value of an axis, merged with the recipe, must plan (headers only): fail before the first cell."""
        from ..merge.engine import plan_merge
        if not values:
            raise MergeError(f"the {label} axis has no values", "type values separated by commas")
        for v in values:
            if label == ALPHA_LABEL and not math.isfinite(float(v)):
                raise MergeError(f"{label}: {v} is not a number", "use numbers such as 0.5 or a range 0-1 [5]")
            s = self.settings({label: v})
            try:
                plan_merge(self.recipe(s))
            except MergeError as e:
                raise type(e)(f"{label} {short(v)}: {e.problem}", e.fix) from None

    def apply(self, p: Any, values: dict[str, Any]) -> None:
        if not self.axes.issubset(values):
            return  # another merge axis of this cell sets its value next: merge once, then
        s = self.settings(values)
        adapter = _adapter()
        if s == self.loaded and self.label is not None and adapter.loaded_label() == self.label:
            _mark(p, self.label)
            return  # the same values are loaded already (and the model was not reloaded since)
        from ..merge.engine import merge
        from . import checkpoints
        recipe = self.recipe(s)
        self.buffer.begin()
        try:
            result = merge(recipe, self.buffer, cancel=_Interrupted(), hash_models=False)
        except Cancelled:
            self.loaded = self.label = None  # the buffer is half written: never reuse it as loaded
            return  # Interrupt: the cell's generation stops at once, the grid keeps what was done
        self.buffer.end()
        self.merges += 1
        label = f"XYZ: {settings_label(s)}"
        adapter.load_state_dict(result.state_dict, checkpoints.resolve(self.form.model_a), label)
        self.loaded, self.label = s, label
        _mark(p, label)

    def finish(self) -> None:
        """After the plot: bring back the selected checkpoint, free the buffer."""
        self.buffer.clear()
        if self.loaded is None:
            return
        self.loaded = self.label = None
        try:
            msg = _adapter().restore()
            log.info("BlockMerge: X/Y/Z plot done: %s", msg)
        except Exception:  # noqa: BLE001 - never break the webui's close(); the user can press Restore
            log.exception("BlockMerge: could not restore the checkpoint after the X/Y/Z plot")


def _mark(p: Any, label: str) -> None:
    """The cell's infotext says which merge made it (a new dict: XYZ's copies share the old one)."""
    p.extra_generation_params = {**(getattr(p, "extra_generation_params", None) or {}), "BlockMerge": label}


def session_of(p: Any, make: Callable[[], FormValues] = recipe_form) -> Session:
    """The plot's session on `p`, created with its close() hook on first use."""
    session = getattr(p, SESSION_ATTR, None)
    if session is None:
        session = Session(make())
        setattr(p, SESSION_ATTR, session)
        close = p.close

        def close_and_restore() -> None:
            try:
                close()
            finally:
                session.finish()
        p.close = close_and_restore
    return session


def confirm_values(label: str) -> Callable[[Any, list], None]:
    def confirm(p: Any, xs: list) -> None:
        session = session_of(p)
        session.axes.add(label)
        session.check(label, xs)
    confirm.__name__ = f"confirm_{label.lower().replace(' ', '_')}"
    return confirm


def apply_value(label: str) -> Callable[[Any, Any, list], None]:
    def apply(p: Any, x: Any, xs: list) -> None:
        values = {**(getattr(p, VALUES_ATTR, None) or {}), label: x}
        setattr(p, VALUES_ATTR, values)
        session = session_of(p)
        session.axes.add(label)  # normally done by confirm
        session.apply(p, values)
    apply.__name__ = f"apply_{label.lower().replace(' ', '_')}"
    return apply


__all__ = ["ALPHA_LABEL", "MBW_LABEL", "COSTS", "on_before_ui", "register_callbacks", "prepare_mbw",
           "find_xyz_module", "Session", "session_of"]
