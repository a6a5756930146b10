"""Two parts of the merge tab around pruned and similar models:

- "Compare models": how alike the picked models A, B (and C) are, per block and element kind — the
  heatmap image and the table of `python -m lib_merge compare`, to choose block weights from;
- the "Key map" picker: a pruned SDXL A (SSD-1B, Vega) merged through a map made by
  `python -m lib_merge map` (found next to model A or in the output folder).

Wired with `Handlers.on` like the rest of the tab; errors show in the section's own status line.
"""
from __future__ import annotations

import os
from typing import Any

import gradio as gr

from ..errors import MergeError
from ..wording import Surface, for_surface
from .actions import Throttled
from .events import Handlers, md_escape
from .form import map_folders


def render_key_map(ui: Any, h: Handlers) -> None:
    """The key map picker (a form field: `ui.c["key_map"]`), refreshed when model A changes."""
    with gr.Accordion("Key map (pruned SDXL: SSD-1B, Vega)", open=False, elem_id="blockmerge_key_map_box"):
        with gr.Row(equal_height=True):
            ui.c["key_map"] = gr.Dropdown([], value=None, label="Key map", elem_id="blockmerge_key_map", scale=4)
            ui.w["key_map_refresh"] = gr.Button("↻", elem_id="blockmerge_key_map_refresh",
                                                elem_classes=["blockmerge-tool"], scale=0, min_width=40)
        ui.w["key_map_note"] = gr.Markdown(
            "For a pruned SDXL model A: B and C are read through this map, so A + alpha·(B − C) uses the layers "
            "each surviving layer came from. Make one with `python -m lib_merge map PRUNED SDXL_BASE -o map.json` "
            "and put it next to the models.", elem_id="blockmerge_key_map_note")
    picked = ui.c["model_a"]
    out = [ui.c["key_map"], ui.w["key_map_note"]]
    h.on(picked.change, lambda a: key_map_choices(h, a), out, [picked], status=ui.w["key_map_note"])
    h.on(ui.w["key_map_refresh"].click, lambda a: key_map_choices(h, a), out, [picked],
         status=ui.w["key_map_note"])


def key_map_choices(h: Handlers, model_a: str | None) -> list:
    from ..merge.keymap import list_maps
    if not model_a:
        return [gr.update(choices=[]), "Pick model A to list the key maps next to it."]
    folders = map_folders(h.host.checkpoint_path(model_a), h.host)
    names = list_maps(folders)
    where = " and ".join(md_escape(f) for f in folders)
    note = (f"{len(names)} key map(s) in {where}." if names else
            f"No key map in {where}. Make one with `python -m lib_merge map PRUNED SDXL_BASE -o map.json`.")
    return [gr.update(choices=names), note]


def render_compare(ui: Any, h: Handlers) -> None:
    """The "Compare models" section: compares the models picked as A, B (and C)."""
    with gr.Accordion("Compare models (how alike, per block)", open=False, elem_id="blockmerge_compare_box"):
        ui.w["compare_run"] = gr.Button("Compare models A, B (and C)", elem_id="blockmerge_compare_run")
        ui.w["compare_status"] = gr.Markdown(
            "Cosine similarity and relative L2 difference |A−x|/|A| per block (rows) and element kind (columns). "
            "Blocks where B differs most from A are where block weights change the most.",
            elem_id="blockmerge_compare_status")
        ui.w["compare_image"] = gr.Image(None, type="pil", label="Heatmap", interactive=False,
                                         elem_id="blockmerge_compare_image")
        ui.w["compare_table"] = gr.Textbox("", lines=12, max_lines=60, label="Table", interactive=False,
                                           elem_id="blockmerge_compare_table")

    def run(progress=gr.Progress(), a: Any = None, b: Any = None, c: Any = None, km: Any = None) -> list:
        return compare_models(h, progress, a, b, c, km)
    ui.w["compare_run"].click(run, inputs=[ui.c["model_a"], ui.c["model_b"], ui.c["model_c"], ui.c["key_map"]],
                              outputs=[ui.w["compare_status"], ui.w["compare_image"], ui.w["compare_table"]])


def compare_models(h: Handlers, progress: Any, a: str | None, b: str | None, c: str | None,
                   key_map: str | None = None) -> list:
    """[status, heatmap image, table] for the picked models (the progress bar while it reads); a pruned
    SDXL A is compared through the key map picked for the merge, if any."""
    from ..merge.compare import compare, format_table
    from ..merge.keymap import find_map
    from ..xy.heatmap import draw_heatmap
    try:
        if not a or not b:
            raise MergeError("compare needs model A and model B", "pick both (and model C to compare it too)")
        paths = [h.host.checkpoint_path(m) for m in (a, b, c) if m]
        name = str(key_map or "").strip()
        km = find_map(name, map_folders(paths[0], h.host)) if name else None
        cb = Throttled(lambda done, total, what: progress(done / total if total else 0, desc=what))
        with h.state.running() as token:
            result = compare(paths, progress=cb, cancel=token, key_map=km)
        image = draw_heatmap(result).image
    except Exception as e:  # noqa: BLE001 - shown in the section (bugs logged by fail())
        return [h.fail(e), gr.update(), gr.update()]
    names = ", ".join(os.path.basename(p) for p in paths)
    status = f"✓ Compared {md_escape(names)} ({md_escape(result.arch_label)}) in {result.seconds:.1f} s."
    status += "".join(f"\n\n- {md_escape(for_surface(n, Surface.TAB))}" for n in result.notes)
    return [status, image, format_table(result)]
