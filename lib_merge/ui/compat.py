"""The few places where gradio 3.41 (A1111) and 4.x (Forge) differ for this tab (WEBUI.md §2)."""
from __future__ import annotations

import os
from typing import Any

import gradio as gr

GRADIO4 = int(gr.__version__.split(".")[0]) >= 4


def js(code: str) -> dict[str, str]:
    """The keyword an event takes for a browser-side function: `_js` in 3.x, `js` in 4.x."""
    return {"js": code} if GRADIO4 else {"_js": code}


def file_path(value: Any) -> str | None:
    """A gr.File value as a path: 4.x gives a str, 3.x a tempfile wrapper (or a dict over the API)."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, dict):
        return value.get("path") or value.get("name")
    name = getattr(value, "name", None) or getattr(value, "path", None)
    return str(name) if name else None


def queue_kwargs(concurrency: int) -> dict[str, int]:
    """`Blocks.queue()` arguments for this many events at once (3.x: a global count; 4.x: per event)."""
    return {"default_concurrency_limit": concurrency} if GRADIO4 else {"concurrency_count": concurrency}
