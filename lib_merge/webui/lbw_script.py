"""The AlwaysVisible `Script` of the LoRA block-weight feature: every hook is one call to the runtime.

Defined here, in a real package module, and imported by `scripts/lora_block_weight.py`, where the
webui finds and registers it. Its first argument is the "enabled" checkbox (on by default), so an API
call that only sends a prompt with `lbw=` tags gets block weights; the plot's arguments follow, in
the order `lbw_plot.FIELDS` documents (mode, range, blocks, ...), each optional.
"""
from __future__ import annotations

import os
from typing import Any

from modules import scripts

from . import settings
from .lbw_files import PresetFiles
from .lbw_runtime import TITLE, runtime


def preset_files() -> PresetFiles:
    return PresetFiles(settings.lbw_presets_path, settings.lbwe_presets_path)


def _enabled_from_infotext(params: dict) -> bool:
    return str(params.get("LBW", "on")).strip().lower() != "off"


class LoraBlockWeightScript(scripts.Script):
    source_file = os.path.abspath(__file__)

    def title(self) -> str:
        return TITLE

    def show(self, is_img2img: bool) -> Any:
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool) -> list:
        from ..ui.lbw_accordion import build_lbw_inputs
        from ..xy.lbw_plot import INFOTEXT
        inputs = build_lbw_inputs(preset_files(), tab="img2img" if is_img2img else "txt2img")
        enabled, *plot = inputs
        self.infotext_fields = [(enabled, _enabled_from_infotext), *_plot_infotext_fields(plot)]
        self.paste_field_names = ["LBW", *INFOTEXT.values()]
        return inputs

    def process(self, p: Any, enabled: bool = True, *args: Any) -> None:
        runtime().process(p, enabled, args)

    def before_process_batch(self, p: Any, enabled: bool = True, *args: Any, **kwargs: Any) -> None:
        runtime().before_process_batch(p)

    def after_extra_networks_activate(self, p: Any, enabled: bool = True, *args: Any, **kwargs: Any) -> None:
        runtime().after_activate(p, kwargs.get("extra_network_data"), kwargs.get("seeds"))

    def process_batch(self, p: Any, enabled: bool = True, *args: Any, **kwargs: Any) -> None:
        runtime().process_batch(p)

    def process_before_every_sampling(self, p: Any, enabled: bool = True, *args: Any, **kwargs: Any) -> None:
        runtime().before_every_sampling(p)

    def postprocess_batch(self, p: Any, enabled: bool = True, *args: Any, **kwargs: Any) -> None:
        runtime().after_batch(p)

    def postprocess(self, p: Any, processed: Any, enabled: bool = True, *args: Any) -> None:
        runtime().postprocess(p, processed)


def _plot_infotext_fields(components: list) -> list:
    """Pasting a plot's grid restores the plot; pasting any other image turns the plot off."""
    from ..errors import MergeError
    from ..xy.lbw_plot import FIELDS, INFOTEXT, Mode

    def mode_of(params: dict) -> str:
        try:
            return Mode.parse(params.get(INFOTEXT["mode"], "off")).label
        except MergeError:  # a hand-edited infotext must not break pasting
            return Mode.OFF.label

    out: list = []
    for name, component in zip(FIELDS, components):
        out.append((component, mode_of if name == "mode" else INFOTEXT[name]))
    return out
