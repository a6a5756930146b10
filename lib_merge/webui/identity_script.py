"""Images made from a model merged in memory name the merge, not model A (an AlwaysVisible Script).

The webui writes "Model" and "Model hash" into every image's parameters from p.sd_model_name and
p.sd_model_hash, which process_images_inner takes from the loaded model's checkpoint info just
before it runs the scripts' `process` (A1111 1.10 modules/processing.py; Forge the same). After
Merge and load, that checkpoint info is still model A's — it must stay so, the webui reloads by it —
so `process` puts the merge's own name and hash there, and its recipe under "BlockMerge recipe".
Imported by scripts/blockmerge_tab.py, where the webui finds the Script subclass.
"""
from __future__ import annotations

from typing import Any

from modules import scripts


def stamp(p: Any) -> None:
    from modules import shared
    identity = getattr(shared.sd_model, "blockmerge_identity", None)
    if identity is None:
        return
    p.sd_model_name = identity.name
    p.sd_model_hash = identity.hash
    p.extra_generation_params.update(identity.infotext())


class BlockMergeModelIdentity(scripts.Script):
    def title(self) -> str:
        return "BlockMerge model identity"

    def show(self, is_img2img: bool) -> Any:
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool) -> list:
        return []

    def process(self, p: Any, *args: Any) -> None:
        stamp(p)
