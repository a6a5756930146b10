"""The one start-up check the entry files (`scripts/*.py`) make before registering anything.

On a webui BlockMerge cannot drive (an `ldm_patched` Forge: old Forge, Forge Classic, reForge) the
webui gets exactly one console line naming the problem and the fix, and a Block Merge tab saying the
same; no script, X/Y/Z axis or API route is registered, so nothing of ours can fail later.
"""
from __future__ import annotations

import logging

from .detect import detect

log = logging.getLogger("lib_merge")
_told = False  # module state survives "Reload UI" (lib_merge stays in sys.modules): one line per process


def unsupported_message() -> str:
    w = detect()
    return (f"BlockMerge does not support {w.label}. Fix: use AUTOMATIC1111 1.10, lllyasviel's Forge or "
            "Forge Neo (Haoming02/sd-webui-forge-classic, branch neo), or the standalone tab: python -m lib_merge ui")


def supported() -> bool:
    """True when BlockMerge can drive this webui; otherwise says why, once per process."""
    global _told
    if detect().supported:
        return True
    if not _told:
        log.error("%s", unsupported_message())
        print(unsupported_message())  # the webui's console shows print; logging may not be configured yet
        _told = True
    return False
