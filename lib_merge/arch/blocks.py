"""Architectures as data: the merge-block vocabulary of each, and the key -> block function.

A checkpoint key belongs to one *component* (UNet, text encoder, VAE, or other buffers) and, when it
is mergeable, to one *block* of the architecture's MBW table (REFERENCE §1).
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from functools import cached_property

UNET = "model.diffusion_model."
VAE = "first_stage_model."


class Component(enum.Enum):
    UNET = "unet"
    TEXT_ENCODER = "text_encoder"
    VAE = "vae"
    OTHER = "other"  # schedule buffers, EMA bookkeeping, markers such as `v_pred`


@dataclass(frozen=True)
class Architecture:
    id: str  # stable, goes into metadata: "sd1", "sd2", "sdxl"
    label: str
    n_in: int  # number of UNet input blocks (12 for SD1/SD2, 9 for SDXL)
    n_out: int
    te_prefixes: tuple[str, ...]

    @cached_property
    def blocks(self) -> tuple[str, ...]:
        """MBW block IDs in weight-string order, BASE first (26 for SD1/SD2, 20 for SDXL)."""
        return ("BASE", *(f"IN{i:02d}" for i in range(self.n_in)), "M00",
                *(f"OUT{i:02d}" for i in range(self.n_out)))

    @cached_property
    def block_index(self) -> dict[str, int]:
        return {b: i for i, b in enumerate(self.blocks)}

    @property
    def summary(self) -> str:
        return f"BASE, IN00..IN{self.n_in - 1:02d}, M00, OUT00..OUT{self.n_out - 1:02d}"

    def component(self, key: str) -> Component:
        if key.startswith(UNET):
            return Component.UNET
        if key.startswith(VAE):
            return Component.VAE
        if key.startswith(self.te_prefixes):
            return Component.TEXT_ENCODER
        return Component.OTHER

    def block_of(self, key: str) -> str | None:
        """The MBW block of a checkpoint key; BASE for text encoders and the VAE, None for others."""
        if key.startswith(UNET):
            return self._unet_block(key[len(UNET):])
        if key.startswith(VAE) or key.startswith(self.te_prefixes):
            return "BASE"
        return None

    def _unet_block(self, rest: str) -> str | None:
        m = _UNET_PART.match(rest)
        if m is None:
            return None
        part, num = m.group(1), m.group(2)
        if part == "input_blocks":
            n = int(num)
            return f"IN{n:02d}" if n < self.n_in else None
        if part == "output_blocks":
            n = int(num)
            return f"OUT{n:02d}" if n < self.n_out else None
        if part == "middle_block":
            return "M00"
        if part in ("time_embed", "label_emb"):
            return "IN00"
        if part == "out":
            return f"OUT{self.n_out - 1:02d}"
        return None


_UNET_PART = re.compile(r"(input_blocks|output_blocks|middle_block|time_embed|label_emb|out)(?:\.(\d+))?\.")

SD1 = Architecture("sd1", "SD1.x", 12, 12, ("cond_stage_model.",))
SD2 = Architecture("sd2", "SD2.x", 12, 12, ("cond_stage_model.",))
SDXL = Architecture("sdxl", "SDXL", 9, 9, ("conditioner.embedders.",))

ARCHITECTURES: dict[str, Architecture] = {a.id: a for a in (SD1, SD2, SDXL)}

# A 26-value list used on SDXL drops IN09-IN11 and OUT09-OUT11 (REFERENCE §3).
SD26_TO_SDXL20 = tuple(i for i, b in enumerate(SD1.blocks) if b not in
                       ("IN09", "IN10", "IN11", "OUT09", "OUT10", "OUT11"))
