"""The LoRA a plot varies is the one tagged `lbw=XYZ`: put a cell's weights there.

`<lora:mine:1:1:lbw=XYZ>` becomes `<lora:mine:1:1:lbw=1,1,1,1,1,1,1,0,1,1,1,1>` for the render with
OUT01 at 0. Only `lbw=XYZ` inside a `<lora:...>` or `<lyco:...>` tag is replaced; the rest of the
prompt is left exactly as typed.
"""
from __future__ import annotations

import re

from ..errors import ParseError
from .plan import LoraSettings

PLACEHOLDER = "XYZ"
_TAG = re.compile(r"<(?:lora|lyco):[^<>]*>", re.IGNORECASE)


def _slot(placeholder: str) -> re.Pattern[str]:
    return re.compile(rf"(?<=:)lbw={re.escape(placeholder)}(?=:|>)")


def count_placeholders(prompt: str, placeholder: str = PLACEHOLDER) -> int:
    slot = _slot(placeholder)
    return sum(len(slot.findall(m.group(0))) for m in _TAG.finditer(prompt))


def check_prompt(prompt: str, placeholder: str = PLACEHOLDER) -> None:
    """ParseError unless some LoRA tag of the prompt says `lbw=XYZ` (check before rendering)."""
    if count_placeholders(prompt, placeholder) == 0:
        raise ParseError(f"no LoRA tag in the prompt has lbw={placeholder}, so the plot has nothing to vary",
                         f"tag the LoRA to analyse, e.g. <lora:mine:1:1:lbw={placeholder}>")


def apply_to_prompt(prompt: str, settings: LoraSettings, placeholder: str = PLACEHOLDER) -> str:
    """The prompt with `lbw=XYZ` replaced by the cell's weights in every LoRA tag that has it."""
    check_prompt(prompt, placeholder)
    slot = _slot(placeholder)
    value = f"lbw={settings.lbw}"
    return _TAG.sub(lambda m: slot.sub(lambda _: value, m.group(0)), prompt)
