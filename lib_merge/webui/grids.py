"""Saving a grid the way the webui saves its own grids (folder, name pattern, format): for WebuiHost.save_grid."""
from __future__ import annotations

from typing import Any


def save_grid(image: Any, info: str) -> str | None:
    """Save an XY grid as the webui saves grids (when 'Save grids' is on): its grid folder, name
    pattern and format. For WebuiHost.save_grid, which the tab's XY plot calls when present."""
    from modules import images, shared
    opts = shared.opts
    if not getattr(opts, "grid_save", True):
        return None
    folder = getattr(opts, "outdir_grids", "") or getattr(opts, "outdir_txt2img_grids", "")
    path, _ = images.save_image(image, folder, "blockmerge_xy", info=info,
                                extension=getattr(opts, "grid_format", "png"), grid=True)
    return path
