"""LoRA tags as the webui hands them to us, and everything about them that does not touch the webui.

The webui parses `<lora:...>` itself (`modules/extra_networks.py`) into `ExtraNetworkParams` whose
`items` are the `:`-separated parts. A tag is ours when it carries one of our named arguments, or a
non-numeric multiplier (the old `<lora:name:1:PRESET>` form, which the builtin cannot read and for
which the user gets a message saying to write `lbw=`). Every other tag is left to the builtin.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from ..arch.blocks import Architecture
from ..errors import ParseError
from ..lora.entries import format_entries
from ..lora.elemental import format_rules
from ..lora.presets import PresetBook
from ..lora.ratios import resolve
from ..lora.ratios import BlockRatios
from ..lora.strengths import active, module_strengths
from ..lora.tag import LoraTag, parse_tag

OUR_ARGS = frozenset({"lbw", "lbwe", "start", "stop", "step", "x", "seed"})
NETWORK_KINDS = ("lora", "lyco")  # A1111 registers the LyCORIS alias `lyco`; Forge only `lora`
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
_WEBUI_TAG = re.compile(r"<(\w+):([^>]+)>")  # modules/extra_networks.py re_extra_net


@dataclass(frozen=True)
class Use:
    """One of our tags in one pass: the name the webui loaded it under, and its parsed form."""
    name: str
    tag: LoraTag
    text: str

    @property
    def scheduled(self) -> bool:
        return self.tag.start is not None or self.tag.stop is not None

    def unet_on(self, step: int) -> bool:
        return active(self.tag, step)

    @property
    def te_on(self) -> bool:
        """The text encoder's part follows the LoRA's state at step 1: conds are computed once per pass."""
        return active(self.tag, 1)


def tag_text(items: Sequence[str]) -> str:
    return "<lora:" + ":".join(items) + ">"


def is_ours(items: Sequence[str]) -> bool:
    if len(items) < 2:
        return False
    positional = 0
    for item in items[1:]:
        key, sep, _ = item.partition("=")
        if sep and "=" not in _:
            if key.strip().lower() in OUR_ARGS:
                return True
            continue
        positional += 1
        if positional <= 2 and not _NUMBER.fullmatch(item):
            return True  # <lora:x:1:PRESET> or <lora:x:1:1,0,0,...>
    return False


def uses_from_network_data(extra_network_data: Mapping[str, Iterable[Any]] | None, presets: PresetBook) -> list[Use]:
    """Our tags among the activated networks, parsed; ParseError (naming the tag) for a bad one."""
    out = []
    for kind in NETWORK_KINDS:
        for params in (extra_network_data or {}).get(kind, []) or []:
            items = [str(x) for x in getattr(params, "items", [])]
            if not is_ours(items):
                continue
            text = tag_text(items)
            out.append(Use(items[0].strip(), parse_tag(text, presets), text))
    return out


def tags_in_prompts(prompts: Iterable[str]) -> list[str]:
    """Our tag texts in prompts, found the way the webui finds extra networks; each once."""
    seen: dict[str, None] = {}
    for prompt in prompts:
        for m in _WEBUI_TAG.finditer(prompt or ""):
            if m.group(1) in NETWORK_KINDS and is_ours(m.group(2).split(":")):
                seen.setdefault(tag_text(m.group(2).split(":")), None)
    return list(seen)


def validate(texts: Iterable[str], arch: Architecture | None, presets: PresetBook) -> list[LoraTag]:
    """Parse and resolve each tag against the model's architecture; the first problem raises."""
    tags = []
    for text in texts:
        tag = parse_tag(text, presets, arch)
        if arch is None:
            raise ParseError(f"{text}: block weights need an SD1, SD2, SDXL or Flux model",
                             "remove lbw=/lbwe=/start=/stop= from the tag, or load an SD1/SD2/SDXL/Flux checkpoint")
        resolve(tag, arch, presets, seed=0)
        tags.append(tag)
    return tags


def infotext(tags: Iterable[LoraTag], arch: Architecture, presets: PresetBook) -> dict[str, str]:
    """Presets expanded, so an image names the values it was made with even where the preset differs."""
    lbw: dict[str, str] = {}
    lbwe: dict[str, str] = {}
    for tag in tags:
        if isinstance(tag.lbw, str):
            entries = presets.lbw_entries(tag.lbw, arch, tag.name)
            lbw.setdefault(tag.lbw, format_entries(entries))
        if tag.lbwe:
            lbwe.setdefault(tag.lbwe, format_rules(presets.elemental(tag.lbwe, tag.name)).replace("\n", ", "))
    out = {}
    if lbw:
        out["LBW presets"] = "; ".join(f"{k}={v}" for k, v in lbw.items())
    if lbwe:
        out["LBW elemental"] = "; ".join(f"{k}={v}" for k, v in lbwe.items())
    return out


def flux_param_block(name: str, arch: Any) -> str | None:
    """The 61-slot block of a Forge / Neo Flux parameter name: `clip_l.transformer....` -> CLIP,
    `t5xxl.transformer....` -> T5, `diffusion_model.<BFL key>` -> the block of that model key (so a
    diffusers LoRA's split q/k/v, which Neo files under the fused qkv key with an offset, lands where
    the weight it changes is)."""
    if name.startswith("clip_l."):
        return "CLIP"
    if name.startswith("t5xxl."):
        return "T5"
    if name.startswith("diffusion_model."):
        return arch.block_of("model." + name)
    return None


def _flux_ratios(tag: LoraTag, names: list[str], job: Any) -> tuple[dict[str, float], BlockRatios]:
    r = resolve(tag, job.arch, job.presets, job.seed)
    out = {}
    for name in names:
        block = flux_param_block(name, job.arch)
        short = name[len("diffusion_model."):] if name.startswith("diffusion_model.") else name
        out[name] = r.ratio(block, (short, short.replace(".", "_")))
    return out, r


def ratios_by_name(tag: LoraTag, names: list[str], job: Any) -> tuple[dict[str, float], BlockRatios]:
    """Each module's block ratio r (strength / multiplier) under the webui's own names."""
    from ..lora.flux_index import is_flux
    if is_flux(job.arch):
        return _flux_ratios(tag, names, job)
    s = module_strengths(tag, names, arch=job.arch, presets=job.presets, seed=job.seed)
    ratios = {}
    for name, ms in s.modules.items():
        m = tag.te if ms.is_te else tag.unet
        ratios[name] = ms.strength / m if m else 0.0
    return ratios, s.ratios


def inline_presets(prompt: str, recorded: str, presets: PresetBook) -> str:
    """A pasted prompt's `lbw=NAME` replaced by the values the image recorded ("LBW presets"), for
    every preset this machine lacks or defines differently, so a pasted image reproduces itself."""
    from ..arch.blocks import SD1, SDXL
    values: dict[str, str] = {}
    for part in recorded.split(";"):
        name, sep, vals = part.strip().partition("=")
        if sep and name and vals:
            values[name.strip()] = vals.strip()
    for name, vals in values.items():
        arch = SDXL if len(vals.split(",")) in (12, 20) else SD1
        try:
            local = format_entries(presets.lbw_entries(name, arch, name))
        except ParseError:
            local = None
        if local != vals:
            pattern = r"(<(?:lora|lyco):[^>]*?\blbw=)" + re.escape(name) + r"(?=[:>])"
            prompt = re.sub(pattern, lambda m, v=vals: m.group(1) + v, prompt)
    return prompt


def digest(*parts: Any) -> str:
    """A short, stable name for a set of weights: equal weights give equal names (and no re-merge)."""
    return hashlib.sha1(repr(parts).encode("utf-8")).hexdigest()[:12]

