"""BlockMerge's options in the webui's Settings page: one section, read with defaults (WEBUI.md §2).

Options are read with `getattr(shared.opts, key, default)` so an option that was never registered
(the settings page not built yet, `--nowebui`) cannot raise.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

SECTION = ("blockmerge", "BlockMerge")
DTYPES = ("keep", "fp16", "bf16", "fp32")


@dataclass(frozen=True)
class Option:
    key: str
    default: Any
    label: str
    info: str
    choices: tuple[str, ...] | None = None


OPTIONS = (
    Option("blockmerge_data_dir", "", "BlockMerge data folder (merge history, merge presets)",
           "empty: <webui data folder>/blockmerge"),
    Option("blockmerge_lbw_presets", "", "LoRA block-weight presets file (NAME:values lines)",
           "empty: <data folder>/lbw_presets.txt"),
    Option("blockmerge_lbwe_presets", "", "LoRA elemental presets file (lbwe=)",
           "empty: <data folder>/lbwe_presets.txt"),
    Option("blockmerge_default_dtype", "fp16", "Default precision of saved merges", "keep = as model A", DTYPES),
    # On by default: with A1111's default 'LoRA in memory limit' of 0, the builtin would otherwise read
    # each block-weighted LoRA from disk again at every activation. Only the builtin's own, unchanged
    # Network objects are put back into its cache dict, and taken back after the batch.
    Option("blockmerge_lbw_keep_in_memory", True, "Keep block-weighted LoRAs in memory between activations",
           "off: the LoRA file may be read again for each batch and the hires pass, unless "
           "'LoRA in memory limit' >= the number of LoRAs"),
)
_BY_KEY = {o.key: o for o in OPTIONS}


def get(key: str) -> Any:
    from modules import shared
    return getattr(shared.opts, key, _BY_KEY[key].default)


def _webui_data_path() -> str:
    try:
        from modules import paths_internal
        return paths_internal.data_path
    except (ImportError, AttributeError):
        from modules import shared
        return getattr(shared.cmd_opts, "data_dir", None) or os.getcwd()


def data_dir() -> str:
    return get("blockmerge_data_dir") or os.path.join(_webui_data_path(), "blockmerge")


def lbw_presets_path() -> str:
    return get("blockmerge_lbw_presets") or os.path.join(data_dir(), "lbw_presets.txt")


def lbwe_presets_path() -> str:
    return get("blockmerge_lbwe_presets") or os.path.join(data_dir(), "lbwe_presets.txt")


def register() -> None:
    """The on_ui_settings callback: add every option under the one BlockMerge section."""
    from modules import shared
    component: Callable | None
    for o in OPTIONS:
        args: dict[str, Any] | None = None
        component = None
        if o.choices is not None:
            import gradio as gr
            component, args = gr.Dropdown, {"choices": list(o.choices)}
        info = shared.OptionInfo(o.default, o.label, component, args, section=SECTION)
        if hasattr(info, "info"):
            info = info.info(o.info)
        shared.opts.add_option(o.key, info)
