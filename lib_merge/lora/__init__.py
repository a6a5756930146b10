"""LoRA half of the library: block weights from the prompt syntax, and bake / merge / extract / inspect.

Independent of the webui: the adapters call `module_strengths` and `active`, the CLI the tools.
"""
from __future__ import annotations

from .bake import BakeResult, bake
from .extract import ExtractResult, extract
from .inspect import LoraReport, format_report, inspect_lora
from .merge import MergeLoraResult, merge_loras
from .presets import DEFAULT_BOOK, PresetBook
from .ratios import BlockRatios, resolve
from .strengths import ModuleStrength, Strengths, active, module_strengths
from .tag import LoraTag, TagMatch, format_tag, parse_prompt, parse_spec, parse_tag

__all__ = ["BakeResult", "bake", "ExtractResult", "extract", "LoraReport", "format_report", "inspect_lora",
           "MergeLoraResult", "merge_loras", "DEFAULT_BOOK", "PresetBook", "BlockRatios", "resolve",
           "ModuleStrength", "Strengths", "active", "module_strengths", "LoraTag", "TagMatch", "format_tag",
           "parse_prompt", "parse_spec", "parse_tag"]
