"""A "LoRA block weight" axis for the webui's own X/Y/Z plot (WEBUI.md §7), for A1111 and Forge.

Registered from `on_before_ui`, which runs after every script file is loaded and before the X/Y/Z
plot builds its dropdowns (at start and after every UI reload, when `xyz_grid.py` runs again with
a fresh `axis_options` list), so the axis is appended each time, once per list (by label).

Values are presets or weight lists for the LoRA tagged `lbw=XYZ`: `OUTD, INS, "1,0,0,0,0,0,0,1,1,1,1,1"`
(quotes around a list, or one value per line). `confirm` checks the values and the prompt before the
plot starts; `apply` only marks the cell's copy of `p` (`lbw_plot.XYZ_ATTR`), and the LoRA block-weight
script reads it in `process`, where the model (and so the list length a preset takes) is known.
"""
from __future__ import annotations

import logging
from typing import Any

from ..errors import ParseError
from ..xy.lbw_plot import XYZ_ATTR, split_xyz_values

log = logging.getLogger("lib_merge")
LABEL = "LoRA block weight"  # stable: the X/Y/Z plot writes it into the grid's infotext ("X Type")
XYZ_MODULE = "xyz_grid.py"  # the webui loads scripts/xyz_grid.py as a module named after the file


def find_xyz_module(scripts_data: Any) -> Any:
    """The module of the builtin X/Y/Z plot among the loaded scripts, or None."""
    for data in scripts_data or []:
        cls = getattr(data, "script_class", None)
        if getattr(cls, "__module__", None) == XYZ_MODULE:
            return getattr(data, "module", None)
    return None


def apply(p: Any, x: Any, xs: Any) -> None:
    setattr(p, XYZ_ATTR, str(x))


def prepare(text: str) -> list[str]:
    return split_xyz_values(text)


def confirm(p: Any, xs: Any) -> None:
    """Before the plot starts: a LoRA to vary, and values that can be weights (checked against the
    loaded model and the user's presets). ParseError stops the plot with the reason."""
    from modules import shared
    from ..xy.prompt import check_prompt
    from .checkpoints import arch_of_model
    from ..xy.lbw_plot import resolve_value
    from .lbw_runtime import runtime
    prompt = p.prompt if isinstance(p.prompt, str) else " ".join(x for x in p.prompt or [] if isinstance(x, str))
    check_prompt(prompt + " " + str(getattr(p, "hr_prompt", "") or ""))
    arch = arch_of_model(shared.sd_model)
    if arch is None:
        raise ParseError("the LoRA block weight axis needs an SD1, SD2 or SDXL model", "load one first")
    book, _ = runtime().presets()
    for x in xs:
        resolve_value(str(x), arch, book, f"{LABEL} value {x!r}")


def register(scripts_module: Any = None) -> bool:
    """Append the axis to the X/Y/Z plot's options if it is not there yet; False without the plot."""
    if scripts_module is None:
        from modules import scripts as scripts_module
    xyz = find_xyz_module(getattr(scripts_module, "scripts_data", None))
    if xyz is None or not hasattr(xyz, "axis_options"):
        log.info("LoRA Block Weight: the X/Y/Z plot script is not loaded; no axis added")
        return False
    if any(getattr(o, "label", None) == LABEL for o in xyz.axis_options):
        return True
    xyz.axis_options.append(xyz.AxisOption(LABEL, str, apply, confirm=confirm, prepare=prepare))
    return True


def on_before_ui() -> None:
    """The `on_before_ui` callback (a module-level function: the same object across script reloads)."""
    try:
        register()
    except Exception:  # noqa: BLE001 - an unusual X/Y/Z plot must not stop the UI from building
        log.exception("LoRA Block Weight: could not add the X/Y/Z plot axis")


def register_callback(script_callbacks: Any) -> None:
    """Called from scripts/lora_block_weight.py at import: once, whatever the reloads."""
    remove = getattr(script_callbacks, "remove_callbacks_for_function", None)
    if remove is not None:
        remove(on_before_ui)
    script_callbacks.on_before_ui(on_before_ui)
