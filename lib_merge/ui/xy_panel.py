"""The merge tab's "XY plot" accordion (gradio 3.41 and 4.x): three axes, Run, Stop, the grids.

Each cell merges the tab's recipe with the cell's values and renders with the txt2img tab's
settings (read by the same browser hook as "Merge and generate"); see xy_host.py for the runner.
Hidden when the host cannot generate (the standalone tab).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from ..errors import MergeError
from ..methods import CALCS
from ..xy import AxisKind, PlotKind, axis_kind, choices, parse_colour, parse_threshold
from . import actions
from .compat import js
from .form import FormValues
from .xy_host import PlotRequest, run_on_host, summary

AXES = ("X", "Y", "Z")
TYPE_LABELS = [label for label, _ in choices(PlotKind.MERGE)]
DEFAULTS = ((AxisKind.ALPHA, "0, 0.25, 0.5, 0.75, 1"), (AxisKind.SEED, "-1"), (AxisKind.NONE, ""))
HINTS = {
    AxisKind.NONE: "",
    AxisKind.ALPHA: "0, 0.5, 1  or a range: 0-1 [5], 0-1 (+0.25)",
    AxisKind.BETA: "0, 0.5, 1  or a range: 0-1 [5]",
    AxisKind.ALPHA_BETA: "alpha,beta pairs separated by spaces: 0,0.5 0.1,0.3 (one number: both)",
    AxisKind.SEED: "1234, 5678  or a range 1-4; -1 draws one",
    AxisKind.MBW_ALPHA: "preset names, or weight strings in quotes or one per line",
    AxisKind.MBW_BETA: "preset names, or weight strings in quotes or one per line",
    AxisKind.MODEL_A: "model names as the pickers list them, separated by commas",
    AxisKind.MODEL_B: "model names as the pickers list them, separated by commas",
    AxisKind.MODEL_C: "model names as the pickers list them, separated by commas",
    AxisKind.PINPOINT_BLOCKS: "blocks that get the alpha/beta axis' value: IN04, OUT01 OUT02, IN00-IN05",
    AxisKind.PINPOINT_ELEMENT: "BLOCKS:ELEMENTS:RATIO, one per line: OUT05:attn1:0",
    AxisKind.EFFECTIVE_ELEMENTAL: "BLOCKS:ELEMENTS:RATIO, one per line; each is diffed against the recipe without it",
    AxisKind.ADJUST: "8 numbers per value, in quotes or one per line: \"0,0,0,2,0,0,0,0\"",
    AxisKind.PINPOINT_ADJUST: "CONT:2, BRI:-1  (or bare names fed by an alpha axis)",
    AxisKind.CALC_MODE: ", ".join(CALCS),
    AxisKind.PROMPT: "one prompt per line",
}
HELP = ("Each cell merges the form above with the cell's values and renders with the txt2img tab's "
        "settings. Cells that differ only by seed or prompt reuse one merge. The recipe goes in the grid's "
        "corner; grids are shown here and saved. Stop keeps the cells done so far.")


@dataclass
class XYPanel:
    types: list = field(default_factory=list)  # X, Y, Z type dropdowns
    values: list = field(default_factory=list)  # X, Y, Z value boxes
    w: dict[str, Any] = field(default_factory=dict)

    @property
    def inputs(self) -> list:
        """After the form: the axes, then threshold, colour and restore (what `run` reads)."""
        axes = [c for pair in zip(self.types, self.values) for c in pair]
        return axes + [self.w["threshold"], self.w["colour"], self.w["restore"]]


class XYHandlers:
    def __init__(self, host: Any, state: Any, fail: Any, n_form: int):
        self.host, self.state, self.fail, self.n_form = host, state, fail, n_form

    def request(self, gen_json: str, values: tuple) -> PlotRequest:
        form = FormValues.from_ui(values[:self.n_form])
        xk, xv, yk, yv, zk, zv, threshold, colour, restore = values[self.n_form:]
        axes = tuple((str(k or "none"), str(v or "")) for k, v in ((xk, xv), (yk, yv), (zk, zv)))
        limit = parse_threshold(20 if threshold is None else threshold)
        return PlotRequest(form, axes, actions.gen_settings(gen_json), limit,  # type: ignore[arg-type]
                           parse_colour(colour or "black"), bool(restore))

    # progress first: gradio inserts it by position, before the *values
    def run(self, progress=gr.Progress(), gen_json: str = "", *values: Any) -> list:
        try:
            req = self.request(gen_json, values)
            cb = actions.Throttled(lambda done, total, what: progress(done / total if total else 0, desc=what))
            result = run_on_host(self.host, self.state, req, cb)
        except Exception as e:  # noqa: BLE001 - MergeError shown as a message, bugs logged (Handlers.fail)
            return [self.fail(e), gr.update()]
        return [summary(result), result.images]

    def stop(self) -> str:
        if not self.state.stop():
            return "Nothing is running."
        interrupt = getattr(self.host, "interrupt", None)  # the webui's Interrupt: ends the current render
        if interrupt is not None:
            interrupt()
        return "■ Stopping… the grid keeps the cells done so far."

    @staticmethod
    def hint(type_label: str) -> Any:
        try:
            kind = axis_kind(type_label or "none")
        except MergeError:
            return gr.update()
        return gr.update(placeholder=HINTS.get(kind, ""))


def render_xy_panel(ui: Any, h: Any, read_txt2img: str) -> XYPanel:
    """Build the accordion inside the tab's Blocks and wire it (`ui` is the MergeTab, `h` its Handlers)."""
    panel = XYPanel()
    host = ui.host
    with gr.Accordion("XY plot", open=False, visible=host.can_generate, elem_id="blockmerge_xy"):
        gr.Markdown(HELP, elem_id="blockmerge_xy_help")
        for axis, (kind, text) in zip(AXES, DEFAULTS):
            a = axis.lower()
            with gr.Row(equal_height=True):
                panel.types.append(gr.Dropdown(TYPE_LABELS, value=kind.label, label=f"{axis} axis type",
                                               elem_id=f"blockmerge_xy_{a}_type", scale=1))
                panel.values.append(gr.Textbox(text, lines=1, label=f"{axis} axis values", placeholder=HINTS[kind],
                                               elem_id=f"blockmerge_xy_{a}_values", scale=3))
        with gr.Row():
            panel.w["threshold"] = gr.Number(20, label="Diff threshold (of 255)", elem_id="blockmerge_xy_threshold",
                                             info="effective elemental checker: a channel changed above this")
            panel.w["colour"] = gr.Textbox("black", label="Diff colour", elem_id="blockmerge_xy_colour",
                                           info="a name or #rrggbb")
            panel.w["restore"] = gr.Checkbox(True, label="Restore the selected checkpoint afterwards",
                                             elem_id="blockmerge_xy_restore")
        with gr.Row():
            panel.w["run"] = gr.Button("Run the XY plot", variant="primary", elem_id="blockmerge_xy_run")
            panel.w["stop"] = gr.Button("Stop the XY plot", variant="stop", elem_id="blockmerge_xy_stop")
        panel.w["status"] = gr.Markdown("", elem_id="blockmerge_xy_status")
        panel.w["gallery"] = gr.Gallery(label="XY grids", columns=1, object_fit="contain",  # a grid is seen whole
                                        elem_id="blockmerge_xy_gallery")
    xh = XYHandlers(host, ui.state, h.fail, len(ui.form_inputs))
    panel.w["handlers"] = xh
    for t, v in zip(panel.types, panel.values):
        t.change(xh.hint, inputs=[t], outputs=[v])
    panel.w["run"].click(xh.run, inputs=[ui.w["gen_json"]] + ui.form_inputs + panel.inputs,
                         outputs=[panel.w["status"], panel.w["gallery"]], **js(read_txt2img))
    panel.w["stop"].click(lambda: xh.stop(), outputs=[panel.w["status"]], queue=False)
    ui.w["xy"] = panel
    return panel
