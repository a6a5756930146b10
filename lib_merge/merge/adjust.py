"""Adjust: detail, contrast and colour tweaks applied to six UNet keys after the merge (REFERENCE §5)."""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..arch.blocks import UNET
from ..errors import ParseError
from .weights import number

NAMES = ("IN", "OUT", "OUT2", "CONT", "BRI", "COL1", "COL2", "COL3")
LIMITS = (6, 6, 6, 10, 10, 10, 10, 10)  # slider ranges; values beyond are allowed but unusual
KEYS = tuple(UNET + k for k in ("input_blocks.0.0.weight", "input_blocks.0.0.bias", "out.0.weight",
                                "out.0.bias", "out.2.weight", "out.2.bias"))


@dataclass(frozen=True)
class Adjust:
    values: tuple[float, ...]  # the 8 numbers in NAMES order

    @property
    def text(self) -> str:
        return ",".join(repr(v) for v in self.values)

    def is_identity(self) -> bool:
        return not any(self.values)

    def apply(self, key: str, t: torch.Tensor, arch_id: str) -> torch.Tensor:
        """Return the adjusted float32 tensor for one of KEYS (others pass through)."""
        i, o, o2, cont, bri, c1, c2, c3 = self.values
        k = key[len(UNET):] if key.startswith(UNET) else key
        if k == "input_blocks.0.0.weight":
            return t * (1 - 0.01 * i)
        if k == "input_blocks.0.0.bias":
            return t * (1 + 0.02 * i)
        if k == "out.0.weight":
            return t * (1 - 0.01 * o)
        if k == "out.0.bias":
            return t * (1 + 0.02 * o)
        if k == "out.2.weight":
            return t * (1 - 0.01 * o2)
        if k == "out.2.bias":
            if arch_id == "sdxl":
                cols = (0.02 * (c1 - c2 - c3), 0.02 * (c3 - c2), 0.02 * bri)
            else:
                cols = (0.02 * (-bri + c1 + c3), 0.02 * (bri / 3 + c1 - c2), 0.02 * (2 * bri / 3 - c2 + c3))
            add = torch.tensor((0.02 * cont, *cols), dtype=t.dtype, device=t.device)
            return t + add
        return t


def parse_adjust(text: str) -> Adjust:
    body = (text or "").strip()
    # commas or spaces separate; an empty slot (`0,,1`) is an error, never skipped: it would shift the rest
    toks = re.split(r"\s*,\s*|\s+", body) if body else []
    if len(toks) > 1 and toks[-1] == "":
        toks.pop()  # a trailing comma is harmless
    order = ", ".join(NAMES)
    if "" in toks:
        n = toks.index("")
        name = f" ({NAMES[n]})" if n < len(NAMES) else ""
        raise ParseError(f"adjust value {n + 1}{name} is empty (the order is {order})",
                         "remove the extra comma or write 0")
    if len(toks) != 8:
        raise ParseError(f"adjust has {len(toks)} numbers, expected 8 ({order})",
                         "give 8 comma-separated numbers, e.g. 0,0,0,0,0,0,0,0")
    return Adjust(tuple(number(t, f"adjust value {n + 1} ({NAMES[n]})") for n, t in enumerate(toks)))
