"""BlockMerge's merge tab and its Settings section, the Merge axes of the webui's X/Y/Z plot, and the
model identity of merges loaded in memory (wiring only; the tab is lib_merge/ui, the webui side
lib_merge/webui). On a webui BlockMerge does not support, only the tab is registered, and it says so."""
from modules import script_callbacks

from lib_merge.webui import startup, tab

tab.register_callbacks(script_callbacks)
if startup.supported():
    from lib_merge.webui import xyz_merge
    from lib_merge.webui.identity_script import BlockMergeModelIdentity  # noqa: F401  (the webui registers Script subclasses found here)

    xyz_merge.register_callbacks(script_callbacks)
