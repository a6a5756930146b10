"""The merge tab and the Settings section, as `on_ui_tabs` / `on_ui_settings` callbacks.

If the tab's Gradio module cannot be imported (a partial install, a gradio the tab does not
support), the webui still gets a tab, saying what is missing, instead of a traceback at start-up.
"""
from __future__ import annotations

import logging
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


def register_callbacks(script_callbacks: Any) -> None:
    """Called from scripts/blockmerge_tab.py: the same function objects, removed first."""
    from . import settings
    from .detect import detect
    remove = getattr(script_callbacks, "remove_callbacks_for_function", None)
    hooks: tuple = ((script_callbacks.on_ui_tabs, on_ui_tabs),)
    if detect().supported:  # otherwise the tab only says why (startup.py)
        hooks += ((script_callbacks.on_ui_settings, settings.register),)
    for register, fn in hooks:
        if remove is not None:
            remove(fn)
        register(fn)
