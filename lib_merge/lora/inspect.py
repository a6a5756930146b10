"""What a LoRA file is: format, architecture, rank/alpha, modules per block, layouts that fit."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field

from ..arch.blocks import SD1
from . import algos
from .flux_index import is_flux
from .keys import raw_module
from .layouts import ALL_LAYOUTS, counts_for
from .lorafile import LoraFile

_META = ("ss_network_module", "ss_network_dim", "ss_network_alpha", "ss_network_args", "ss_base_model_version",
         "ss_sd_model_name", "ss_output_name", "modelspec.architecture", "modelspec.title")


@dataclass
class LoraReport:
    path: str
    format: str  # "kohya LoRA", "LyCORIS LoCon", "PEFT / diffusers LoRA", ...
    arch: str  # "SDXL", "SD1.x", "SD1.x (or SD2.x)"
    arch_id: str
    algorithms: dict[str, int]
    modules: int
    text_encoders: list[str]
    ranks: dict[int, int]  # rank -> modules
    alphas: dict[str, int]  # alpha -> modules
    blocks: dict[str, int]  # block -> modules, in block order
    layouts: list[int]  # list lengths that reach every module of the file
    unplaced: list[str] = field(default_factory=list)  # modules of no known layer
    refused: list[str] = field(default_factory=list)  # DoRA / IA3 / OFT ... modules
    unknown_keys: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _flux_naming(names: list[str]) -> str:
    """Which trainer's names a Flux LoRA uses (the transformer's; text encoders are lora_te* in all)."""
    found = []
    for label, test in (("kohya", lambda n: n.startswith("lora_unet_")),
                        ("OneTrainer", lambda n: n.startswith("lora_transformer_")),
                        ("SimpleTuner LyCORIS", lambda n: n.startswith("lycoris_")),
                        ("diffusers / PEFT", lambda n: n.startswith("transformer.")),
                        ("BFL names", lambda n: n.startswith(("diffusion_model.", "model.diffusion_model.")))):
        if any(test(n) for n in names):
            found.append(label)
    return " + ".join(found) or "unknown naming"


def _format(lf: LoraFile, kinds: Counter) -> str:
    names = [m.raw for m in lf.modules.values()]
    if is_flux(lf.arch):
        kinds_text = ", ".join(k for k in ("LoRA" if kinds.get("lora") else "", "LoHa" if kinds.get("loha") else "",
                                            "LoKr" if kinds.get("lokr") else "", "full" if kinds.get("full") else "")
                               if k)
        return f"Flux {kinds_text or 'LoRA'} ({_flux_naming(names)})"
    peft = any(raw_module(n) is not None and not n.startswith(("lora_", "lycon_", "lycoris_")) for n in names)
    parts = []
    if kinds.get("lora"):
        has_conv = any(m.algo is not None and m.algo.id == "lora" and len(lf.shapes(m)["down"]) == 4
                       and lf.shapes(m)["down"][2:] != (1, 1) for m in lf.modules.values())
        tucker = any("mid" in m.params for m in lf.modules.values())
        parts.append("LyCORIS LoCon" if has_conv or tucker else ("PEFT / diffusers LoRA" if peft else "kohya LoRA"))
    for kind, label in (("loha", "LyCORIS LoHa"), ("lokr", "LyCORIS LoKr"), ("full", "LyCORIS full")):
        if kinds.get(kind):
            parts.append(label)
    return " + ".join(parts) or "unknown"


def inspect_lora(path: str) -> LoraReport:
    with LoraFile.open(path, fallback=SD1) as lf:
        arch = lf.arch
        assert arch is not None
        kinds: Counter = Counter()
        ranks: Counter = Counter()
        alphas: Counter = Counter()
        blocks: Counter = Counter()
        unplaced, refused_mods = [], []
        te = set()
        for m in lf.modules.values():
            why = algos.refused(m.param_set)
            if why:
                refused_mods.append(f"{m.raw} ({why[0]})")
            if m.algo is not None and not m.empty:
                kinds[m.algo.id] += 1
                r = m.algo.rank(lf.shapes(m))
                if r:
                    ranks[r] += 1
            if "alpha" in m.params:
                alphas[_fmt(float(lf.load_param(m, "alpha")))] += 1
            if m.block is None:
                unplaced.append(m.raw)
            else:
                blocks[m.block] += 1
            if m.module is not None and m.module.is_te:
                te.add({"te1": "clip_l", "te2": "t5xxl"}[m.module.component] if is_flux(arch) else m.module.component)
        fits = [n for n in counts_for(arch) if n != 26 or arch.id != "sdxl"
                if all(b in ALL_LAYOUTS[n].blocks for b in blocks)]
        g = lf.guess
        if g is None:
            label = "unknown (its names do not tell)"
        else:
            label = arch.label if g.certain else f"{arch.label} (or SD2.x)"
        return LoraReport(
            path=path, format=_format(lf, kinds), arch=label, arch_id=arch.id, algorithms=dict(kinds),
            modules=len(lf.modules), text_encoders=sorted(te), ranks=dict(sorted(ranks.items())),
            alphas=dict(alphas), blocks={b: blocks[b] for b in arch.blocks if blocks[b]}, layouts=fits,
            unplaced=unplaced, refused=refused_mods, unknown_keys=list(lf.unknown_keys),
            metadata={k: v for k, v in lf.metadata.items() if k in _META})


def _fmt(v: float) -> str:
    from .entries import fmt
    return fmt(v)


def format_report(r: LoraReport) -> str:
    lines = [f"{os.path.basename(r.path)}: {r.format}, {r.arch}, {r.modules} modules"]
    lines.append("  algorithms: " + ", ".join(f"{k} {v}" for k, v in r.algorithms.items()))
    if r.ranks:
        lines.append("  rank: " + ", ".join(f"{k} ({v} modules)" for k, v in r.ranks.items()))
    if r.alphas:
        lines.append("  alpha: " + ", ".join(f"{k} ({v} modules)" for k, v in r.alphas.items()))
    lines.append("  text encoders: " + (", ".join(r.text_encoders) or "none"))
    lines.append("  modules per block: " + ", ".join(f"{b} {n}" for b, n in r.blocks.items()))
    lines.append("  lbw layouts that reach every module: " + (", ".join(
        f"{n} ({ALL_LAYOUTS[n].label})" for n in r.layouts) or "none"))
    for title, items in (("modules of unknown layers", r.unplaced), ("refused kinds", r.refused),
                         ("keys of no LoRA module", r.unknown_keys)):
        if items:
            lines.append(f"  {title}: {len(items)} (first: {items[0]})")
    for k, v in r.metadata.items():
        lines.append(f"  {k}: {v}")
    return "\n".join(lines)
