"""`WebuiHost`: the merge tab's `lib_merge.ui.host.Host` inside A1111 1.10 or Forge.

The adapter module (`a1111` or `forge`) is chosen once from `detect()`. Loading, restoring and
generating take the webui's `queue_lock` themselves, so a merge never swaps weights under a running
generation; the merge itself (reading files) runs outside the lock.
"""
from __future__ import annotations

from types import ModuleType
from typing import MutableMapping

import torch

from ..errors import MergeError
from ..merge.identity import Identity
from ..ui.host import GenSettings, Generated, Progress
from . import checkpoints, settings
from .detect import detect


class WebuiHost:
    can_load = True
    can_generate = True

    def __init__(self) -> None:
        w = detect()
        if not w.supported:
            raise MergeError(f"BlockMerge cannot drive {w.label}",
                             "use AUTOMATIC1111 1.10, lllyasviel's Forge or Forge Neo, "
                             "or the standalone tab: python -m lib_merge ui")
        self.name = w.kind.value
        self._adapter: ModuleType
        if w.is_neo:
            from . import neo as adapter
        elif w.is_forge:
            from . import forge as adapter
        else:
            from . import a1111 as adapter
        self._adapter = adapter

    def checkpoints(self) -> list[str]:
        return checkpoints.names()

    def refresh(self) -> None:
        checkpoints.refresh()

    def checkpoint_path(self, name: str) -> str:
        return checkpoints.resolve(name).filename

    def output_dir(self) -> str:
        return checkpoints.models_dir()

    def default_dtype(self) -> str:
        """The Settings page's default precision for saved merges (not part of the Host protocol)."""
        return settings.get("blockmerge_default_dtype")

    def data_dir(self) -> str:
        """Where the tab keeps its history and merge presets (Settings → BlockMerge)."""
        return settings.data_dir()

    def load_state_dict(self, state_dict: MutableMapping[str, torch.Tensor], base_name: str, label: str,
                        identity: Identity | None = None) -> str:
        from modules import shared
        from modules.call_queue import queue_lock
        base = checkpoints.resolve(base_name)
        with queue_lock:
            status = self._adapter.load_state_dict(state_dict, base, label)
            # read by identity_script.stamp for every image made from this model; on the model object,
            # which the webui replaces when it loads another checkpoint
            shared.sd_model.blockmerge_identity = identity
            return status

    def restore(self) -> str:
        from modules import shared
        from modules.call_queue import queue_lock
        with queue_lock:
            model = shared.sd_model
            status = self._adapter.restore()
            for m in (model, shared.sd_model):
                if m is not None and hasattr(m, "blockmerge_identity"):
                    del m.blockmerge_identity
            return status

    def generate(self, settings_: GenSettings, progress: Progress | None = None) -> Generated:
        from .generate import generate
        return generate(settings_, progress, self._adapter.loaded_label())

    def save_grid(self, image, info: str):
        """Save an XY grid where the webui saves grids (and only if its "Save grids" option is on)."""
        from .grids import save_grid
        return save_grid(image, info)

    def interrupt(self) -> None:
        """Stop a running generation, as the webui's own Interrupt button does (not part of the protocol)."""
        from modules import shared
        shared.state.interrupt()
