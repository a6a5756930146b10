"""BlockMerge's merge tab and its Settings section, and the Merge axes of the webui's X/Y/Z plot
(wiring only; the tab is lib_merge/ui, the webui side lib_merge/webui)."""
from modules import script_callbacks

from lib_merge.webui import tab, xyz_merge

tab.register_callbacks(script_callbacks)
xyz_merge.register_callbacks(script_callbacks)
