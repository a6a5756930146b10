"""The merge tab and the Settings section, as `on_ui_tabs` / `on_ui_settings` callbacks.

If the tab's Gradio module cannot be imported (a partial install, a gradio the tab does not
support), the webui still gets a tab, saying what is missing, instead of a traceback at start-up.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from ..errors import MergeError

log = logging.getLogger("lib_merge")
TAB_TITLE = "Block Merge"
TAB_ID = "blockmerge"


def _message_tab(text: str) -> Any:
    import gradio as gr
    with gr.Blocks(analytics_enabled=False) as tab:
        gr.Markdown(f"### BlockMerge\n\n{text}")
    return tab


def on_ui_tabs() -> list[tuple[Any, str, str]]:
    from ..ui.state import TabState
    from . import settings
    from .host import WebuiHost
    try:
        host = WebuiHost()
    except MergeError as e:
        return [(_message_tab(str(e)), TAB_TITLE, TAB_ID)]
    try:
        from ..ui.merge_tab import build_merge_tab
    except ImportError as e:
        log.error("BlockMerge: the merge tab could not be loaded: %s", e)
        text = (f"The merge tab could not be loaded ({e}). The LoRA block-weight script and the REST API "
                "still work. Reinstall the extension, or report this error.")
        return [(_message_tab(text), TAB_TITLE, TAB_ID)]
    from ..io.hashing import HashCache
    from .hash_share import WebuiHashes
    tab = build_merge_tab(host, TabState(data_dir=settings.data_dir(), hash_cache=HashCache(shared=WebuiHashes())))
    return [(tab, TAB_TITLE, TAB_ID)]


def ensure_image_temp_dir() -> None:
    """Create the webui's folder for temporary images if it is set and missing. Forge Neo saves every
    image a Gradio output returns there (modules/ui_tempdir.py save_pil_to_file: `tempfile` in
    opts.temp_dir, default `<webui>/tmp`, created only when the setting is changed), so on a fresh
    install the tab's first image (Compare heatmap, Merge and generate) failed with FileNotFoundError
    (seen in a real Neo build, ivanuser/stable-diffusion-webui-Nukem neo c24dc1c2). A1111 and Forge
    default to "" (the system temp folder): nothing to do there."""
    try:
        from modules import shared
        path = getattr(shared.opts, "temp_dir", "") or ""
    except Exception:  # noqa: BLE001 - no webui options: nothing to prepare
        return
    if not isinstance(path, str) or not path:
        return
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        log.warning("BlockMerge: cannot create the webui's temporary images folder %s (%s). Fix: set Settings → "
                    "Directory for temporary images to a writable folder", path, e.strerror)


def register_callbacks(script_callbacks: Any) -> None:
    """Called from scripts/blockmerge_tab.py: the same function objects, removed first."""
    from . import settings
    from .detect import detect
    ensure_image_temp_dir()
    remove = getattr(script_callbacks, "remove_callbacks_for_function", None)
    hooks: tuple = ((script_callbacks.on_ui_tabs, on_ui_tabs),)
    if detect().supported:  # otherwise the tab only says why (startup.py)
        hooks += ((script_callbacks.on_ui_settings, settings.register),)
    for register, fn in hooks:
        if remove is not None:
            remove(fn)
        register(fn)
