"""BlockMerge's REST API under /blockmerge/v1 (wiring only; the routes are lib_merge/webui/api.py)."""
from modules import script_callbacks

from lib_merge.webui import startup

if startup.supported():
    from lib_merge.webui import api

    if hasattr(script_callbacks, "remove_callbacks_for_function"):
        script_callbacks.remove_callbacks_for_function(api.on_app_started)
    script_callbacks.on_app_started(api.on_app_started)
