"""The builtin X/Y/Z plot of the double (builtin_scripts/xyz_grid.py), run the way the webui runs it.

    xyz = load_xyz(webui)               # as load_scripts() loads the webui's own scripts/ folder
    webui.script_callbacks.before_ui_callback()
    p, processed, script = run_xyz(webui, [("Merge alpha", "0,0.5"), ("Seed", "1,2")])

`run_xyz` does what txt2img does around a script: `queue_lock` held (the gradio call holds it),
`shared.state.begin/end`, the script's `ui()` then `run()`, all inside `closing(p)`.
"""
from __future__ import annotations

import os
from contextlib import closing
from typing import Any, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
BUILTIN = os.path.join(HERE, "builtin_scripts")


NEO_XYZ = os.path.join(HERE, "neo", "extensions-builtin", "xyz")


def load_xyz(w: Any) -> Any:
    """Load (or reload: a fresh module, and in A1111/Forge a fresh axis_options) the webui's xyz_grid.py.
    Neo: the builtin extension extensions-builtin/xyz (its root on sys.path while it loads, for lib_xyz)."""
    if w.flavor == "neo":
        return w.scripts.load_script_file(NEO_XYZ, os.path.join(NEO_XYZ, "scripts", "xyz_grid.py"))
    return w.scripts.load_script_file(HERE, os.path.join(BUILTIN, "xyz_grid.py"))


def xyz_class(w: Any) -> type:
    return next(d.script_class for d in reversed(w.scripts.scripts_data) if d.script_class.__module__ == "xyz_grid.py")


def run_xyz(w: Any, axes: Sequence[tuple[str, str]], prompt: str = "a cat", *, no_fixed_seeds: bool = False,
            **kw: Any) -> tuple[Any, Any, Any]:
    from modules.call_queue import queue_lock
    script = xyz_class(w)()
    script.ui(False)
    labels = [o.label for o in script.current_axis_options]
    args: list[Any] = []
    for label, values in list(axes) + [("Nothing", "")] * (3 - len(axes)):
        args += [labels.index(label), values, None]  # type (an index), values, dropdown values
    p = w.processing.StableDiffusionProcessingTxt2Img(prompt=prompt, **kw)
    with queue_lock:
        w.shared.state.begin(job="txt2img")
        try:
            with closing(p):
                processed = script.run(p, *args, no_fixed_seeds=no_fixed_seeds)
        finally:
            w.shared.state.end()
    return p, processed, script
