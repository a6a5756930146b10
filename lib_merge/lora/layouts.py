"""The four LoRA block layouts users type (12, 17, 20, 26 values) and how a list expands (REFERENCE §7).

A list names blocks of one layout, BASE first. It expands to every block of the LoRA's architecture:
named blocks take their value, blocks the layout does not name take 0. The 26 layout used on SDXL
keeps the blocks SDXL has (the 26 -> 20 rule of §3). The SD1 layouts on an SDXL LoRA and the SDXL
layouts on an SD1/SD2 LoRA are refused: their positions mean different layers there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from ..arch.blocks import SD1, SDXL, Architecture
from ..arch.flux import FLUX1, FluxArchitecture
from ..errors import ParseError

BLOCKS26 = SD1.blocks  # BASE, IN00..IN11, M00, OUT00..OUT11
BLOCKS20 = SDXL.blocks  # BASE, IN00..IN08, M00, OUT00..OUT08
BLOCKS61 = FLUX1.blocks  # CLIP, T5, IN, D00..D18, S00..S37, OUT (LBW's BLOCKIDFLUX)


@dataclass(frozen=True)
class Layout:
    count: int
    family: str  # "sd" (SD1/SD2) or "sdxl"
    blocks: tuple[str, ...]
    label: str


LAYOUTS: dict[int, Layout] = {lay.count: lay for lay in (
    Layout(12, "sdxl", ("BASE", "IN04", "IN05", "IN07", "IN08", "M00", *(f"OUT{i:02d}" for i in range(6))),
           "SDXL LoRA"),
    Layout(17, "sd", ("BASE", "IN01", "IN02", "IN04", "IN05", "IN07", "IN08", "M00",
                      *(f"OUT{i:02d}" for i in range(3, 12))), "SD1/SD2 LoRA"),
    Layout(20, "sdxl", BLOCKS20, "SDXL full (LyCORIS, conv layers)"),
    Layout(26, "sd", BLOCKS26, "SD1/SD2 full (LyCORIS, conv layers)"),
)}
# Flux LoRAs: the 61 slots of LBW's BLOCKIDFLUX (hako-mikan/sd-webui-lora-block-weight
# scripts/lora_block_weight.py @ b403cb7), whatever the checkpoint's block counts. Kept out of
# LAYOUTS, which the SD-only slider UI and XY plot iterate.
FLUX_LAYOUT = Layout(61, "flux", BLOCKS61, "Flux.1 LoRA (CLIP, T5, IN, D00..D18, S00..S37, OUT)")
ALL_LAYOUTS: dict[int, Layout] = {**LAYOUTS, 61: FLUX_LAYOUT}


def family(arch: Architecture | FluxArchitecture) -> str:
    if isinstance(arch, FluxArchitecture):
        return "flux"
    return "sdxl" if arch.id == "sdxl" else "sd"


FAMILY_COUNTS: dict[str, tuple[int, ...]] = {"sdxl": (12, 20, 26), "sd": (17, 26), "flux": (61,)}


def counts_for(arch: Architecture | FluxArchitecture) -> tuple[int, ...]:
    """The list lengths a LoRA of this architecture accepts."""
    return FAMILY_COUNTS[family(arch)]


def describe_counts(arch: Architecture | FluxArchitecture) -> str:
    return " or ".join(f"{n} ({ALL_LAYOUTS[n].label})" for n in counts_for(arch))


def check_count(n: int, where: str) -> Layout:
    """The layout of an n-value list, or a ParseError naming the allowed counts."""
    if n not in ALL_LAYOUTS:
        raise ParseError(f"{where}: {n} block weights given; a list needs 12, 17, 20, 26 or 61 values",
                         "give 17 values for SD1/SD2 LoRAs, 12 for SDXL LoRAs (26 / 20 with conv layers), "
                         "61 for Flux LoRAs, or a preset name")
    return ALL_LAYOUTS[n]


def expand(values: Sequence[float], arch: Architecture | FluxArchitecture, where: str) -> dict[str, float]:
    """{block: ratio} over every block of `arch` from a 12/17/20/26/61-value list."""
    layout = check_count(len(values), where)
    if len(values) not in counts_for(arch):
        raise ParseError(f"{where}: {len(values)} values is the {layout.label} layout, but this is "
                         f"{article(arch.label)} LoRA", f"give {describe_counts(arch)} values, or a preset name")
    out = {b: 0.0 for b in arch.blocks}
    for block, v in zip(layout.blocks, values):
        if block in out:
            out[block] = float(v)
    return out


def article(label: str) -> str:
    """`an SDXL`, `an SD1.x`, `a Flux.1`."""
    return f"{'an' if label[:1] in 'AEFHILMNORSX' and not label.startswith('Flux') else 'a'} {label}"


def named(layout: Layout, full: Mapping[str, float]) -> tuple[float, ...]:
    """The values a layout shows of a full {block: ratio} table (for display and presets)."""
    return tuple(full.get(b, 0.0) for b in layout.blocks)
