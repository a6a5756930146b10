"""The merge tab's layout and wiring, one builder for the webui (A1111 gradio 3.41, Forge gradio 4.40)
and the standalone server.

    with gr.Blocks(analytics_enabled=False) as tab:       # or build_merge_tab(host)
        render_merge_tab(host, TabState(data_dir=...))
    return [(tab, "Block Merge", "blockmerge")]          # on_ui_tabs

Only constructor keywords both gradio versions accept, `gr.update(...)` for every change, and
`compat.js` for the one browser-side hook. Labels are unique within the tab (ui-config.json keys).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import gradio as gr

from . import labels, mbw
from .compare_panel import render_compare, render_key_map
from .compat import js
from .events import Handlers
from .form import UI_FIELDS, FormValues
from .host import Host
from .state import TabState
from .xy_panel import render_xy_panel

# Reads the txt2img tab's fields (javascript/blockmerge.js) into the first input of "Merge and generate".
READ_TXT2IMG = ("(...args) => { const f = window.blockmergeTxt2imgSettings; "
                "args[0] = JSON.stringify(f ? f() : {}); return args; }")


@dataclass
class MergeTab:
    """The components, for callers that wire more (the webui adapter) and for tests."""
    host: Host
    state: TabState
    c: dict[str, Any] = field(default_factory=dict)  # form fields by FormValues name
    sliders: list = field(default_factory=list)  # MBW sliders (SD's 26, then Flux's 61), in mbw.SLIDER_BLOCKS order
    adjust: list = field(default_factory=list)  # the 8 adjust sliders
    w: dict[str, Any] = field(default_factory=dict)  # everything else: buttons, status, history...

    @property
    def form_inputs(self) -> list:
        return [self.c[f] for f in UI_FIELDS] + self.adjust


def build_merge_tab(host: Host, state: TabState | None = None) -> gr.Blocks:
    """A Blocks holding the whole tab (what the webui's on_ui_tabs returns)."""
    with gr.Blocks(analytics_enabled=False) as tab:
        render_merge_tab(host, state)
    return tab


def render_merge_tab(host: Host, state: TabState | None = None) -> MergeTab:
    """Build the tab inside the caller's Blocks."""
    ui = MergeTab(host, state or TabState())
    h = Handlers(host, ui.state)
    d = FormValues()
    with gr.Row(elem_id="blockmerge_tab", elem_classes=["blockmerge"]):
        with gr.Column(scale=3):
            _models(ui, h)
            _method(ui, d)
            _buttons(ui)
            ui.w["status"] = gr.Markdown("", elem_id="blockmerge_status")
            _block_weights(ui, h, d)
            _details(ui, h, d)
        with gr.Column(scale=2):
            _results(ui, h)
    ui.w["gen_json"] = gr.Textbox("{}", visible=False, label="txt2img settings (JSON)")
    render_xy_panel(ui, h, READ_TXT2IMG)  # the merge XY plot, full width under the tab (xy_panel.py)
    _wire(ui, h)
    return ui


def _models(ui: MergeTab, h: Handlers) -> None:
    choices = h.model_choices()
    with gr.Row(equal_height=True):
        for slot, label in (("model_a", "Model A"), ("model_b", "Model B"), ("model_c", "Model C (3-model modes)")):
            ui.c[slot] = gr.Dropdown(choices, value=None, label=label, elem_id=f"blockmerge_{slot}", scale=4)
        ui.w["refresh"] = gr.Button("↻", elem_id="blockmerge_refresh", elem_classes=["blockmerge-tool"],
                                    scale=0, min_width=40)


def _method(ui: MergeTab, d: FormValues) -> None:
    with gr.Row():
        ui.c["mode"] = gr.Dropdown(list(labels.MODE_LABELS.values()), value=labels.MODE_LABELS[d.mode],
                                   label="Merge mode", elem_id="blockmerge_mode")
        ui.c["calc"] = gr.Dropdown(list(labels.CALC_LABELS.values()), value=labels.CALC_LABELS[d.calc],
                                   label="Calc mode", elem_id="blockmerge_calc")
    with gr.Row():
        ui.c["alpha"] = gr.Slider(-1, 2, d.alpha, step=0.01, label="alpha", elem_id="blockmerge_alpha",
                                  info="how much of B (or of B - C)")
        ui.c["beta"] = gr.Slider(-1, 2, d.beta, step=0.01, label="beta", elem_id="blockmerge_beta",
                                 info="how much of C (triple sum, sum twice, extract, tensor)")
        ui.c["gamma"] = gr.Slider(0, 2, d.gamma, step=0.01, label="gamma", elem_id="blockmerge_gamma",
                                  info="extract's sharpness (0 or more)")


def _buttons(ui: MergeTab) -> None:
    host = ui.host
    with gr.Row():
        ui.w["save"] = gr.Button("Merge and save", variant="primary", elem_id="blockmerge_merge_save")
        ui.w["load"] = gr.Button("Merge and load", visible=host.can_load, elem_id="blockmerge_merge_load")
        ui.w["generate"] = gr.Button("Merge and generate", visible=host.can_generate,
                                     elem_id="blockmerge_merge_generate")
        ui.w["restore"] = gr.Button("Restore the original checkpoint", visible=host.can_load,
                                    elem_id="blockmerge_restore")
        ui.w["stop"] = gr.Button("Stop", variant="stop", elem_id="blockmerge_stop")


def _block_weights(ui: MergeTab, h: Handlers, d: FormValues) -> None:
    with gr.Accordion("Block weights (MBW)", open=True, elem_id="blockmerge_mbw"):
        with gr.Row():
            ui.w["arch"] = gr.Radio(list(labels.ARCH_LABELS.values()), value=labels.ARCH_LABELS["sd1"],
                                    label="Block layout (follows model A)", elem_id="blockmerge_arch")
            ui.w["target"] = gr.Radio(list(labels.TARGET_LABELS.values()), value=labels.TARGET_LABELS["alpha"],
                                      label="The sliders edit", elem_id="blockmerge_target")
        with gr.Row():
            ui.c["alpha_blocks"] = gr.Textbox(
                d.alpha_blocks, label="alpha block weights", elem_id="blockmerge_alpha_blocks",
                placeholder="BASE,IN00,...,M00,...,OUT11 or a preset name; empty: alpha everywhere")
            ui.c["beta_blocks"] = gr.Textbox(
                d.beta_blocks, label="beta block weights", elem_id="blockmerge_beta_blocks",
                placeholder="as alpha, for the modes that use beta")
        ui.w["mbw_note"] = gr.Markdown(mbw.describe_text("", "sd1"), elem_id="blockmerge_mbw_note")
        with gr.Row(equal_height=True):
            ui.w["preset"] = gr.Dropdown(mbw.preset_names(ui.state.presets(), "sd1"), value=None,
                                         label="Load a preset", elem_id="blockmerge_preset", scale=3)
            ui.w["preset_name"] = gr.Textbox("", label="New preset name", elem_id="blockmerge_preset_name",
                                             placeholder="MY_PRESET", scale=2)
            ui.w["save_preset"] = gr.Button("Save preset", elem_id="blockmerge_save_preset", scale=1)
        sliders: dict[str, Any] = {}

        def column(blocks: Any) -> None:
            with gr.Column(min_width=160):
                for b in blocks:
                    sliders[b] = gr.Slider(-1, 2, 0.5, step=0.01, label=labels.SLIDER_LABELS.get(b, b),
                                           elem_id=f"blockmerge_mbw_{b}", visible=b in mbw.shown_blocks("sd1"))
        # one row per slider set; the layout shows one row (and, within SD's, SDXL hides six sliders)
        with gr.Row(elem_classes=["blockmerge-sliders"], elem_id="blockmerge_sliders_sd") as sd_row:
            column(("BASE", "M00"))
            column([b for b in mbw.SD_SLIDERS if b.startswith("IN")])
            column([b for b in mbw.SD_SLIDERS if b.startswith("OUT")])
        with gr.Row(elem_classes=["blockmerge-sliders"], elem_id="blockmerge_sliders_flux", visible=False) as flux_row:
            column(("CLIP", "T5", "IN", "OUT"))
            doubles = [b for b in mbw.FLUX_SLIDERS if b.startswith("D")]
            singles = [b for b in mbw.FLUX_SLIDERS if b.startswith("S")]
            column(doubles)
            column(singles[:len(singles) // 2])
            column(singles[len(singles) // 2:])
        ui.w["sd_row"], ui.w["flux_row"] = sd_row, flux_row
        ui.sliders = [sliders[b] for b in mbw.SLIDER_BLOCKS]


def _details(ui: MergeTab, h: Handlers, d: FormValues) -> None:
    with gr.Accordion("Elemental", open=True, elem_id="blockmerge_elemental_box"):
        ui.c["elemental"] = gr.Textbox(d.elemental, lines=3, label="Elemental merge", elem_id="blockmerge_elemental",
                                       placeholder="OUT05 OUT08:attn1:0.88  (BLOCKS:ELEMENTS:RATIO, one per line)")
    with gr.Accordion("Include / exclude", open=False):
        with gr.Row():
            ui.c["select"] = gr.Radio(list(labels.SELECT_LABELS.values()), value=labels.SELECT_LABELS[d.select],
                                      label="Limit the merge", elem_id="blockmerge_select")
            ui.c["select_text"] = gr.Textbox(d.select_text, label="Blocks and key parts",
                                             elem_id="blockmerge_select_text", placeholder="IN00-IN05 attn2 VAE ADJUST")
    with gr.Accordion("Adjust (detail, contrast, colour)", open=False):
        with gr.Row():
            for name, limit in labels.ADJUST:
                ui.adjust.append(gr.Slider(-limit, limit, 0.0, step=0.1, label=name, info=labels.ADJUST_HINTS[name],
                                           elem_id=f"blockmerge_adjust_{name}", min_width=200))
        ui.w["adjust_reset"] = gr.Button("Reset adjust", elem_id="blockmerge_adjust_reset")
    with gr.Accordion("Random weights", open=False):
        with gr.Row():
            ui.c["seed"] = gr.Number(d.seed, precision=0, label="Random seed (-1: draw one, it is recorded)",
                                     elem_id="blockmerge_seed")
            ui.c["x_low"] = gr.Number(d.x_low, label="X low", elem_id="blockmerge_x_low")
            ui.c["x_high"] = gr.Number(d.x_high, label="X high", elem_id="blockmerge_x_high")
        with gr.Row():
            ui.w["fill_token"] = gr.Radio(["R: uniform 0..1", "U: uniform -0.5..1.5", "X: uniform X low..X high"],
                                          value="R: uniform 0..1", label="Random token",
                                          elem_id="blockmerge_fill_token")
            ui.w["fill"] = gr.Button("Fill the edited weights with it", elem_id="blockmerge_fill")
    with gr.Accordion("Save options", open=True):
        with gr.Row():
            ui.c["name"] = gr.Textbox(d.name, label="Output file name", elem_id="blockmerge_name",
                                      placeholder="empty: A_B_method.safetensors in the output folder")
            ui.c["dtype"] = gr.Radio(list(labels.DTYPE_LABELS.values()), value=labels.DTYPE_LABELS[d.dtype],
                                     label="Precision", elem_id="blockmerge_dtype")
        with gr.Row():
            ui.c["overwrite"] = gr.Checkbox(d.overwrite, label="Overwrite", elem_id="blockmerge_overwrite")
            ui.c["prune"] = gr.Checkbox(d.prune, label="Prune (keep UNet, text encoders, VAE)",
                                        elem_id="blockmerge_prune")
            ui.c["merge_vae"] = gr.Checkbox(d.merge_vae, label="Merge the VAE too", elem_id="blockmerge_merge_vae")
    render_key_map(ui, h)


def _results(ui: MergeTab, h: Handlers) -> None:
    host = ui.host
    render_compare(ui, h)
    ui.w["recipe"] = gr.Textbox("", lines=14, max_lines=40, label="Recipe of the last merge", interactive=False,
                                elem_id="blockmerge_recipe")
    ui.w["gallery"] = gr.Gallery(label="Generated images", visible=host.can_generate, columns=2,
                                 elem_id="blockmerge_gallery")
    ui.w["infotext"] = gr.Textbox("", label="Generation parameters", visible=host.can_generate, interactive=False,
                                  elem_id="blockmerge_infotext")
    with gr.Accordion("History", open=False, elem_id="blockmerge_history_box"):
        with gr.Row(equal_height=True):
            ui.w["history"] = gr.Dropdown(h.history_labels(), value=None, label="Past merges",
                                          elem_id="blockmerge_history", scale=4)
            ui.w["history_refresh"] = gr.Button("↻", elem_classes=["blockmerge-tool"], scale=0, min_width=40,
                                                elem_id="blockmerge_history_refresh")
        ui.w["history_view"] = gr.Textbox("", lines=8, max_lines=30, label="Past merge details", interactive=False,
                                          elem_id="blockmerge_history_view")
        ui.w["history_load"] = gr.Button("Load its settings into the form", elem_id="blockmerge_history_load")
    with gr.Accordion("Recipe from file", open=False, elem_id="blockmerge_file_box"):
        ui.w["file_pick"] = gr.Dropdown(h.model_choices(), value=None, label="Merged model to read",
                                        elem_id="blockmerge_file_pick")
        ui.w["file_drop"] = gr.File(label="…or drop a .safetensors file", file_types=[".safetensors"],
                                    elem_id="blockmerge_file_drop")
        ui.w["file_summary"] = gr.Markdown("", elem_id="blockmerge_file_summary")
        ui.w["file_recipe"] = gr.Textbox("", lines=8, max_lines=30, label="Recipe in the file", interactive=False,
                                         elem_id="blockmerge_file_recipe")
        ui.w["file_state"] = gr.State(None)
        ui.w["file_load"] = gr.Button("Load this recipe into the form", elem_id="blockmerge_file_load")
        ui.w["paste_text"] = gr.Textbox("", lines=3, label="…or paste the parameters of an image made from a merge "
                                        "loaded in memory", elem_id="blockmerge_paste_text")
        ui.w["paste_load"] = gr.Button("Load the recipe from these parameters", elem_id="blockmerge_paste_load")


def _wire(ui: MergeTab, h: Handlers) -> None:
    c, w, on = ui.c, ui.w, h.on
    status = w["status"]
    pickers = [c["model_a"], c["model_b"], c["model_c"], w["file_pick"]]
    mbw_in = [w["arch"], w["target"], c["alpha_blocks"], c["beta_blocks"]]
    mbw_out = ui.sliders + [w["mbw_note"]]
    note = w["mbw_note"]

    on(w["refresh"].click, h.refresh_models, pickers + [status], status=status)
    on(c["model_a"].change, h.detect_arch, [w["arch"], note], [c["model_a"]], status=note)
    on(c["calc"].change, lambda calc: [h.calc_changed(calc)], [c["mode"]], [c["calc"]])

    # block weights: the layout and the edited field pick the sliders; typing and dragging sync both ways
    def relayout(event: Callable[..., Any]) -> Any:
        return on(event, h.layout_changed, mbw_out, mbw_in, status=note)
    relayout(w["arch"].change)
    on(w["arch"].change, lambda a: [h.preset_choices(a)], [w["preset"]], [w["arch"]])
    on(w["arch"].change, h.slider_rows, [w["sd_row"], w["flux_row"]], [w["arch"]])
    relayout(w["target"].change)
    for which in ("alpha", "beta"):
        on(c[f"{which}_blocks"].input, h.text_typed(which), mbw_out,
           [w["arch"], w["target"], c[f"{which}_blocks"]], status=note)
    for s in ui.sliders:
        on(s.release, h.slider_released, [c["alpha_blocks"], c["beta_blocks"], note],
           [w["arch"], w["target"]] + ui.sliders, status=note)
    on(w["preset"].input, h.preset_picked, [c["alpha_blocks"], c["beta_blocks"]] + mbw_out,
       [w["preset"], w["arch"], w["target"]], status=note)
    on(w["save_preset"].click, h.save_preset, [status, w["preset"]], [w["preset_name"]] + mbw_in)
    relayout(on(w["fill"].click, h.fill_random, [c["alpha_blocks"], c["beta_blocks"], note],
                [w["fill_token"], w["arch"], w["target"]], status=note).then)
    on(w["adjust_reset"].click, lambda: [0.0] * len(ui.adjust), ui.adjust)

    # merges (their handlers take a Progress, which Gradio finds in their own signature: not wrapped)
    merged = [status, w["recipe"], w["history"]]
    on(w["save"].click(h.merge_save, inputs=ui.form_inputs, outputs=merged).then, h.models_changed, pickers)
    w["load"].click(h.merge_load, inputs=ui.form_inputs, outputs=merged)
    w["generate"].click(h.merge_generate, inputs=[w["gen_json"]] + ui.form_inputs,
                        outputs=merged + [w["gallery"], w["infotext"]], **js(READ_TXT2IMG))
    on(w["restore"].click, lambda: [h.restore()], [status])
    on(w["stop"].click, lambda: [h.stop()], [status], queue=False)

    # history and recipes back into the form (then the sliders follow the loaded text)
    loaded = ui.form_inputs + [status]
    on(w["history_refresh"].click, lambda: [h.history_choices()], [w["history"]])
    on(w["history"].change, lambda label: [h.history_show(label)], [w["history_view"]], [w["history"]])
    relayout(on(w["history_load"].click, h.history_load, loaded, [w["history"]], status=status).then)
    file_out = [w["file_summary"], w["file_recipe"], w["file_state"]]
    on(w["file_pick"].change, h.file_picked, file_out, [w["file_pick"]])
    on(w["file_drop"].upload, h.file_dropped, file_out, [w["file_drop"]])
    relayout(on(w["file_load"].click, h.file_load, loaded, [w["file_state"]], status=status).then)
    relayout(on(w["paste_load"].click, h.paste_load, loaded, [w["paste_text"]], status=status).then)