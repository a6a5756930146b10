"""LoRA block weights from `<lora:NAME:TE:UNET:lbw=...>` tags, as an AlwaysVisible script, with its XY
plot and Effective Block Analyzer, and a "LoRA block weight" axis for the webui's X/Y/Z plot (wiring
only: the logic is lib_merge/webui/lbw_*.py, analyzer_run.py and xyz_lora.py, the accordion
lib_merge/ui/lbw_accordion.py). Nothing is registered on a webui BlockMerge does not support."""
from modules import script_callbacks

from lib_merge.webui import startup

if startup.supported():
    from lib_merge.webui import lbw_runtime, xyz_lora
    from lib_merge.webui.lbw_script import LoraBlockWeightScript  # noqa: F401  (the webui registers the Script subclasses it finds here)

    lbw_runtime.register_callbacks(script_callbacks)
    xyz_lora.register_callback(script_callbacks)
