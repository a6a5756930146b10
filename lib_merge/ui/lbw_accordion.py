"""The LoRA block-weight accordion shown under txt2img and img2img (gradio 3.41 and 4.x).

The script arguments are the "enabled" checkbox and the plot settings (off / XY plot / Effective
Block Analyzer, in the order `lib_merge.xy.lbw_plot.FIELDS` documents); the rest edits the
user's presets files: the block-weight presets (`NAME:values`), the elemental presets (`lbwe=`), a
weight maker with one slider per block that writes a preset line, and a tag checker. The files come
in as an object with read/save methods (the webui passes one bound to its Settings), so nothing here
imports the webui. Building the accordion has no side effects: the API builds it again to read
defaults. Only `gr.update` and constructor arguments are used, so it builds under gradio 3.41 and 4.x.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Protocol, Sequence

import gradio as gr

from ..errors import MergeError, ParseError
from ..lora.entries import fmt
from ..lora.layouts import LAYOUTS
from ..xy.lbw_plot import DEFAULTS, LAYOUT_CHOICES, Mode
from ..xy.axes import PlotKind, choices as axis_choices

MAX_BLOCKS = max(LAYOUTS)
PLOT_HELP = ("Tag the LoRA to study `<lora:NAME:1:1:lbw=XYZ>` and press Generate. **Effective Block Analyzer**: "
             "one image with every block at *base*, one per block with that block at *low*, then a grid per seed "
             "(rows `BLOCK` / `Diff: p%`, columns diff, low, source) and a bar chart of Diff % per block. "
             "**XY plot**: the axes below; identical cells are rendered once, one grid per Z value. Uses your "
             "sampler, size, steps and scripts; Interrupt keeps a partial grid.")
HELP = ("Add block weights to a LoRA tag: `<lora:NAME:1:1:lbw=PRESET>` or `lbw=1,0,0,...` (12/17/20/26 values, "
        "BASE first), `lbwe=ELEMENTAL`, `start=N` (off for the first N steps), `stop=N` (off after step N), "
        "`step=A-B`, `x=V` for X entries. On by default whenever a tag carries one of these.")


class Files(Protocol):
    def read_lbw(self) -> str: ...
    def read_lbwe(self) -> str: ...
    def save_lbw(self, text: str) -> str: ...
    def save_lbwe(self, text: str) -> str: ...
    def check(self, tag: str, arch_id: str) -> dict: ...


def preset_line(name: str, count: int, values: Sequence[float]) -> str:
    """`NAME:v1,...` from the first `count` slider values (the weight maker's output)."""
    name = name.strip()
    if not name or any(c in name for c in ":,# \t"):
        raise ParseError(f"preset name {name!r} is empty or has a space, ':', ',' or '#'", "name it like MY_PRESET")
    if count not in LAYOUTS:
        raise ParseError(f"{count} is not a block layout", "pick 12, 17, 20 or 26")
    vals = list(values)[:count]
    if len(vals) != count:
        raise ParseError(f"{len(vals)} values for the {count}-block layout", f"give {count} values")
    return f"{name}:{','.join(fmt(round(float(v), 4)) for v in vals)}"


def _safe(fn: Callable[..., Any], *fallback: Any) -> Callable[..., Any]:
    """Run fn; a user mistake becomes a message in the status box instead of an error popup."""
    def run(*args: Any) -> Any:
        try:
            return fn(*args)
        except MergeError as e:
            return (*fallback, f"⚠ {e}") if fallback else f"⚠ {e}"
    return run


def _layout_updates(count: str) -> list:
    blocks = LAYOUTS[int(count)].blocks
    return [gr.update(visible=i < len(blocks), label=blocks[i] if i < len(blocks) else f"#{i}")
            for i in range(MAX_BLOCKS)]


def build_lbw_accordion(files: Files, *, tab: str) -> gr.Checkbox:
    """Build the accordion in the current Blocks context; return the enabled checkbox."""
    return build_lbw_inputs(files, tab=tab)[0]


def _plot_inputs(prefix: str) -> list:
    """The plot settings, in `FIELDS` order (the script's args after `enabled`)."""
    d = DEFAULTS
    axis_labels = [label for label, _ in axis_choices(PlotKind.LORA)]
    mode = gr.Radio(choices=[m.label for m in Mode], value=d.mode.label, label="Plot (varies the LoRA tagged lbw=XYZ)",
                    elem_id=f"{prefix}_plot_mode")
    with gr.Column(visible=False, elem_id=f"{prefix}_plot_box") as box:
        gr.Markdown(PLOT_HELP)
        with gr.Column(visible=False, elem_id=f"{prefix}_analyzer_box") as analyzer_box:
            with gr.Row():
                rng = gr.Textbox(value=d.range, label="Range (low,base)", placeholder="0,1", elem_id=f"{prefix}_range")
                blocks = gr.Textbox(value=d.blocks, label="Blocks",
                                    placeholder="empty: every block; 12ALL (SDXL), 17ALL, 20ALL, 26ALL, IDs, IN04-OUT02, NOT M00",
                                    elem_id=f"{prefix}_blocks")
            with gr.Row():
                seeds = gr.Number(value=d.seeds, precision=0, label="Number of seeds", elem_id=f"{prefix}_seeds")
                threshold = gr.Number(value=d.threshold, label="Difference threshold (of 255)",
                                      elem_id=f"{prefix}_threshold")
                colour = gr.ColorPicker(value=d.colour, label="Diff colour", elem_id=f"{prefix}_diff_colour")
                swap = gr.Checkbox(value=d.swap, label="Swap axes (blocks across)", elem_id=f"{prefix}_swap")
        with gr.Column(visible=False, elem_id=f"{prefix}_xy_box") as xy_box:
            axes = []
            for axis in ("x", "y", "z"):
                with gr.Row():
                    kind = gr.Dropdown(choices=axis_labels, value=getattr(d, f"{axis}_type"),
                                       label=f"Plot {axis.upper()} type", elem_id=f"{prefix}_{axis}_type")
                    values = gr.Textbox(value=getattr(d, f"{axis}_values"), label=f"Plot {axis.upper()} values",
                                        placeholder="0,0.5,1 | OUT01, IN04-OUT02 | 1234, 1235 | \"1,0,...\" or one list per line",
                                        elem_id=f"{prefix}_{axis}_values")
                axes += [kind, values]
        layout = gr.Radio(choices=list(LAYOUT_CHOICES), value=d.layout,
                          label="LoRA layout of the plot (auto: 12 on SDXL, 17 on SD1/SD2)", elem_id=f"{prefix}_plot_layout")

    def show(label: str) -> list:
        m = Mode.parse(label)
        return [gr.update(visible=m is not Mode.OFF), gr.update(visible=m is Mode.ANALYZER),
                gr.update(visible=m is Mode.XY)]

    mode.change(fn=show, inputs=[mode], outputs=[box, analyzer_box, xy_box])
    return [mode, rng, blocks, seeds, threshold, colour, swap, *axes, layout]


def build_lbw_inputs(files: Files, *, tab: str) -> list:
    """Build the accordion in the current Blocks context; return the script's inputs: the enabled
    checkbox, then the plot settings in `lib_merge.xy.lbw_plot.FIELDS` order."""
    prefix = f"blockmerge_lbw_{tab}"
    with gr.Accordion("LoRA Block Weight", open=False, elem_id=f"{prefix}_accordion"):
        enabled = gr.Checkbox(value=True, label="Apply LoRA block weights from lbw=/lbwe=/start=/stop= in tags",
                              elem_id=f"{prefix}_enabled")
        gr.Markdown(HELP)
        plot = _plot_inputs(prefix)
        with gr.Tab("Presets"):
            lbw_text = gr.Textbox(value=files.read_lbw, lines=10, max_lines=40, show_label=True,
                                  label="LoRA block-weight presets file", elem_id=f"{prefix}_presets")
            with gr.Row():
                lbw_load = gr.Button("Reload from file", elem_id=f"{prefix}_presets_load")
                lbw_save = gr.Button("Check and save", variant="primary", elem_id=f"{prefix}_presets_save")
            lbw_status = gr.Markdown("")
        with gr.Tab("Elemental"):
            lbwe_text = gr.Textbox(value=files.read_lbwe, lines=10, max_lines=40,
                                   label="LoRA elemental presets file (lbwe=)", elem_id=f"{prefix}_elemental")
            with gr.Row():
                lbwe_load = gr.Button("Reload from file", elem_id=f"{prefix}_elemental_load")
                lbwe_save = gr.Button("Check and save", variant="primary", elem_id=f"{prefix}_elemental_save")
            lbwe_status = gr.Markdown("")
        with gr.Tab("Weight maker"):
            count = gr.Radio(choices=[str(n) for n in sorted(LAYOUTS)], value="17",
                             label="Block layout (12/20 SDXL, 17/26 SD1/SD2)", elem_id=f"{prefix}_layout")
            sliders = []
            blocks17 = LAYOUTS[17].blocks
            for row_start in range(0, MAX_BLOCKS, 6):
                with gr.Row():
                    for i in range(row_start, min(row_start + 6, MAX_BLOCKS)):
                        sliders.append(gr.Slider(minimum=-1.0, maximum=2.0, step=0.05, value=1.0,
                                                 label=blocks17[i] if i < len(blocks17) else f"#{i}",
                                                 visible=i < len(blocks17), elem_id=f"{prefix}_w{i}"))
            with gr.Row():
                name = gr.Textbox(label="Preset name", value="MY_PRESET", elem_id=f"{prefix}_maker_name")
                make = gr.Button("Make line", elem_id=f"{prefix}_maker_make")
                add = gr.Button("Add line to the presets", elem_id=f"{prefix}_maker_add")
            line = gr.Textbox(label="Preset line", interactive=True, elem_id=f"{prefix}_maker_line")
            maker_status = gr.Markdown("")
        with gr.Tab("Check a tag"):
            with gr.Row():
                tag = gr.Textbox(label="LoRA tag to check", placeholder="<lora:name:1:1:lbw=OUTD>",
                                 elem_id=f"{prefix}_check_tag")
                arch = gr.Radio(choices=["sd1", "sd2", "sdxl"], value="sd1", label="Architecture",
                                elem_id=f"{prefix}_check_arch")
                check = gr.Button("Check", elem_id=f"{prefix}_check")
            report = gr.Code(label="Per-block ratios and strengths", language="json", interactive=False)

    def _reader(read: Callable[[], str]) -> Callable[[], tuple[str, str]]:
        return lambda: (read(), "")

    lbw_load.click(fn=_safe(_reader(files.read_lbw), gr.update()), inputs=[], outputs=[lbw_text, lbw_status])
    lbw_save.click(fn=_safe(files.save_lbw), inputs=[lbw_text], outputs=[lbw_status])
    lbwe_load.click(fn=_safe(_reader(files.read_lbwe), gr.update()), inputs=[], outputs=[lbwe_text, lbwe_status])
    lbwe_save.click(fn=_safe(files.save_lbwe), inputs=[lbwe_text], outputs=[lbwe_status])
    count.change(fn=_layout_updates, inputs=[count], outputs=sliders)

    def _make(n: str, preset: str, *values: float) -> tuple[str, str]:
        return preset_line(preset, int(n), values), ""

    def _add(text: str, new_line: str) -> tuple[str, str]:
        new_line = (new_line or "").strip()  # gradio 4 sends None for a textbox never typed in
        if not new_line:
            raise MergeError("no preset line yet", "press Make line first")
        added = (text or "").rstrip("\n") + "\n" + new_line + "\n"
        return added, "Added; press Check and save on the Presets tab to keep it."

    def _check(text: str, arch_id: str) -> str:
        return json.dumps(files.check(text, arch_id), indent=1)

    make.click(fn=_safe(_make, gr.update()), inputs=[count, name, *sliders], outputs=[line, maker_status])
    add.click(fn=_safe(_add, gr.update()), inputs=[lbw_text, line], outputs=[lbw_text, maker_status])
    check.click(fn=_safe(_check), inputs=[tag, arch], outputs=[report])
    return [enabled, *plot]
