"""LoRA half of the library: block weights from the prompt syntax, and bake / merge / extract / inspect.

Independent of the webui: the adapters call `module_strengths` and `active`, the CLI the tools.
"""
from __future__ import annotations

import importlib
from typing import Any

# Names are loaded on first use, so `lib_merge.lora.layouts` and `.tag` can be imported (by plots,
# for instance) without importing torch.
_EXPORTS = {
    # the functions `bake` and `extract` share their modules' names: import them from
    # lib_merge.lora.bake / .extract, so a submodule can never shadow them
    "bake": ("BakeResult",), "extract": ("ExtractResult",),
    "inspect": ("LoraReport", "format_report", "inspect_lora"), "merge": ("MergeLoraResult", "merge_loras"),
    "presets": ("DEFAULT_BOOK", "PresetBook"), "ratios": ("BlockRatios", "resolve"),
    "strengths": ("ModuleStrength", "Strengths", "active", "module_strengths"),
    "tag": ("LoraTag", "TagMatch", "format_tag", "parse_prompt", "parse_spec", "parse_tag"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BakeResult", "ExtractResult", "LoraReport", "format_report", "inspect_lora",
           "MergeLoraResult", "merge_loras", "DEFAULT_BOOK", "PresetBook", "BlockRatios", "resolve",
           "ModuleStrength", "Strengths", "active", "module_strengths", "LoraTag", "TagMatch", "format_tag",
           "parse_prompt", "parse_spec", "parse_tag"]
