"""LoRA block weights from `<lora:NAME:TE:UNET:lbw=...>` tags, as an AlwaysVisible script (wiring only:
the logic is lib_merge/webui/lbw_*.py, the accordion lib_merge/ui/lbw_accordion.py)."""
from modules import script_callbacks

from lib_merge.webui import lbw_runtime
from lib_merge.webui.lbw_script import LoraBlockWeightScript  # noqa: F401  (the webui registers the Script subclasses it finds here)

lbw_runtime.register_callbacks(script_callbacks)
