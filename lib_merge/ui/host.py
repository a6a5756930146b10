"""What the merge tab needs from whatever hosts it: the webui (A1111 or Forge) or the standalone server.

The tab (lib_merge/ui) is written against this protocol only; lib_merge/webui provides the webui
hosts and lib_merge/ui/standalone.py the file-only one. Nothing here imports gradio or the webui.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, MutableMapping, Protocol

import torch

from ..merge.identity import Identity

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class GenSettings:
    """The txt2img settings a "Merge and generate" uses (read from the txt2img tab by javascript/)."""
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    sampler_name: str = "Euler a"
    scheduler: str | None = None
    batch_size: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GenSettings":
        names = set(cls.__dataclass_fields__)
        known = {k: v for k, v in d.items() if k in names and k != "extra"}
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})


@dataclass(frozen=True)
class Generated:
    images: list  # PIL images
    infotext: str


class Host(Protocol):
    name: str  # "standalone", "a1111", "forge"
    can_load: bool  # "Merge and load" / "Restore" make sense
    can_generate: bool  # "Merge and generate" makes sense

    def checkpoints(self) -> list[str]:
        """Names to show in the model pickers (refreshed by refresh())."""

    def refresh(self) -> None:
        """Rescan the models folder."""

    def checkpoint_path(self, name: str) -> str:
        """The file behind a picker name; raises MergeError if it is gone."""

    def output_dir(self) -> str:
        """Where "Merge and save" writes by default."""

    def load_state_dict(self, state_dict: MutableMapping[str, torch.Tensor], base_name: str,
                        label: str, identity: Identity | None = None) -> str:
        """Put merged weights into the running model in place (base_name = model A). Returns a status line.
        With an identity, images made from it name the merge and carry its recipe, not model A's name."""

    def restore(self) -> str:
        """Bring back the checkpoint the user had selected. Returns a status line."""

    def generate(self, settings: GenSettings, progress: Progress | None = None) -> Generated:
        """Render with the webui's own pipeline and the loaded (merged) model."""
