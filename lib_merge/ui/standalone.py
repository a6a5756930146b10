"""The merge tab without a webui: `python -m lib_merge ui --models-dir DIR`.

Models come from a folder, merges are saved to files; there is no running model to load into or
generate with, so those buttons are hidden. The server listens on 127.0.0.1 only and gradio's
telemetry is off (environment and Blocks), so nothing leaves the machine from the Python side.
"""
from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: its import-time checks read it

from typing import Any, MutableMapping  # noqa: E402

import torch  # noqa: E402

from ..errors import MergeError, ModelFileError  # noqa: E402
from .host import Generated, GenSettings, Progress  # noqa: E402
from .state import TabState  # noqa: E402

MODEL_EXT = (".safetensors", ".ckpt")
LOCALHOST = "127.0.0.1"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class StandaloneHost:
    """Host over a models folder (searched recursively): names are paths relative to it."""
    name = "standalone"
    can_load = False
    can_generate = False

    def __init__(self, models_dir: str, output_dir: str | None = None):
        if not os.path.isdir(models_dir):
            raise ModelFileError(f"models folder {models_dir} does not exist", "pass --models-dir with your models")
        self.models_dir = os.path.abspath(models_dir)
        self._output_dir = os.path.abspath(output_dir) if output_dir else self.models_dir
        if not os.path.isdir(self._output_dir):
            raise MergeError(f"output folder {self._output_dir} does not exist",
                             "create it or pass another --output-dir")
        self._names: list[str] = []
        self.refresh()

    def refresh(self) -> None:
        names = []
        for folder, dirs, files in os.walk(self.models_dir):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in files:
                if f.lower().endswith(MODEL_EXT) and not f.startswith("."):
                    names.append(os.path.relpath(os.path.join(folder, f), self.models_dir).replace(os.sep, "/"))
        self._names = sorted(names, key=str.lower)

    def checkpoints(self) -> list[str]:
        return list(self._names)

    def checkpoint_path(self, name: str) -> str:
        path = os.path.abspath(os.path.join(self.models_dir, name))
        if os.path.commonpath([path, self.models_dir]) != self.models_dir:
            raise ModelFileError(f"{name} is outside the models folder", "pick a model from the list")
        if not os.path.isfile(path):
            raise ModelFileError(f"model {name} is gone from {self.models_dir}", "press ↻ to refresh the list")
        return path

    def output_dir(self) -> str:
        return self._output_dir

    def load_state_dict(self, state_dict: MutableMapping[str, torch.Tensor], base_name: str, label: str,
                        identity: Any = None) -> str:
        raise MergeError("the standalone tab has no running model to load into", "use Merge and save")

    def restore(self) -> str:
        raise MergeError("the standalone tab has no running model to restore", "nothing to do here")

    def generate(self, settings: GenSettings, progress: Progress | None = None) -> Generated:
        raise MergeError("the standalone tab cannot generate images", "run the tab inside the webui")


def read_css() -> str:
    try:
        with open(os.path.join(ROOT, "style.css"), encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def build_app(host: StandaloneHost, state: TabState):
    """The page: a heading and the tab, with system fonts (the default theme fetches web fonts)."""
    import gradio as gr

    from .merge_tab import render_merge_tab

    sans = ["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
    theme = gr.themes.Default(font=sans, font_mono=["ui-monospace", "Consolas", "monospace"])
    with gr.Blocks(analytics_enabled=False, title="BlockMerge", css=read_css(), theme=theme) as demo:
        gr.Markdown(f"## BlockMerge\nModels from `{host.models_dir}`; merges are saved to `{host.output_dir()}`.",
                    elem_id="blockmerge_header")
        render_merge_tab(host, state)
    return demo


def serve(models_dir: str, port: int | None = None, output_dir: str | None = None, data_dir: str | None = None,
          block: bool = True):
    """Build and launch on 127.0.0.1. Returns the Blocks (already closed when `block`)."""
    from .compat import queue_kwargs

    host = StandaloneHost(models_dir, output_dir)
    demo = build_app(host, TabState(data_dir=data_dir))
    demo.queue(**queue_kwargs(4))
    try:
        demo.launch(server_name=LOCALHOST, server_port=port, share=False, inbrowser=False, show_api=False,
                    prevent_thread_lock=not block)
    except OSError as e:
        raise MergeError(f"cannot listen on {LOCALHOST}:{port} ({e})", "pass another --port") from None
    return demo
