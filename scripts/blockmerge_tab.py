"""BlockMerge's merge tab and its Settings section (wiring only; the tab is lib_merge/ui, the webui
side lib_merge/webui)."""
from modules import script_callbacks

from lib_merge.webui import tab

tab.register_callbacks(script_callbacks)
