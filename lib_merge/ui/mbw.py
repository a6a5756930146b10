"""The block-weight editor's logic: sliders <-> weight text, the architecture of model A, presets.

The editor has 26 sliders named after the SD1/SD2 blocks and 61 named after Flux.1's slots (CLIP, T5,
IN, D00..D18, S00..S37, OUT, the SuperMerger/LBW vocabulary). A layout shows its own: SD1 the 26;
SDXL 20 of them (IN09-IN11 and OUT09-OUT11 hidden, the others exactly SDXL's blocks, in order); Flux
the 61. The block names of the two sets never collide, so one slider list serves every layout.
"""
from __future__ import annotations

import os
import re
import tempfile

from ..arch import SD1, SDXL, Architecture, detect
from ..arch.flux import FLUX1
from ..errors import MergeError, ParseError
from ..io.models import read_shapes
from ..merge.presets import PresetBook, builtin_names, parse_preset_text
from ..merge.weights import is_random, tokens_for

SD_SLIDERS: tuple[str, ...] = SD1.blocks  # 26, BASE first
FLUX_SLIDERS: tuple[str, ...] = FLUX1.blocks  # 61, CLIP (Flux's BASE slot) first
SLIDER_BLOCKS: tuple[str, ...] = SD_SLIDERS + FLUX_SLIDERS  # every slider of the editor, in this order
EDITOR_ARCHS = ("sd1", "sdxl", "flux")  # the editor's layouts; SD2 shares SD1's blocks, Chroma Flux's
_EDITOR = {"sd1": SD1, "sdxl": SDXL, "flux": FLUX1}


def editor_arch(arch_id: str) -> Architecture:
    return _EDITOR.get(arch_id, SD1)  # type: ignore[return-value]  (FluxArchitecture has the same surface)


def shown_blocks(arch_id: str) -> frozenset[str]:
    return frozenset(editor_arch(arch_id).blocks)


def detect_editor_arch(path: str) -> tuple[str | None, str]:
    """(editor layout id, label such as 'SDXL', 'SD2.x inpaint' or 'Flux.1 dev') of a model file, from
    its header. The layout is None for a Flux-family model whose block counts are not Flux.1's 19 + 38
    (the sliders cannot show it; its weights are typed)."""
    tensors, _ = read_shapes(path)
    info = detect({k: v.shape for k, v in tensors.items()}, os.path.basename(path))
    if info.arch.blocks[0] == "CLIP":  # Flux.1, Chroma, or a Flux-like model with other counts
        return ("flux" if info.arch.blocks == FLUX1.blocks else None), info.label
    return ("sdxl" if info.arch.id == "sdxl" else "sd1"), info.label


def text_to_sliders(text: str, arch_id: str, presets: PresetBook | None = None,
                    what: str = "alpha block weights") -> list[float | None]:
    """Slider values for a weight string or preset name: one per SLIDER_BLOCKS entry, None where the
    slider should stay as it is (blocks the layout hides, random tokens, a missing BASE).
    Raises ParseError when the text cannot be read; an empty text leaves every slider alone."""
    if not text.strip():
        return [None] * len(SLIDER_BLOCKS)
    arch = editor_arch(arch_id)
    toks = tokens_for(text, arch, presets or PresetBook(), what)
    names = arch.blocks[len(arch.blocks) - len(toks):]  # without BASE when one value short
    out: list[float | None] = [None] * len(SLIDER_BLOCKS)
    for name, tok in zip(names, toks):
        if not is_random(tok):
            out[SLIDER_BLOCKS.index(name)] = float(tok)
    return out


def sliders_to_text(values: list[float], arch_id: str) -> str:
    """The weight string of the sliders the layout shows, BASE first."""
    if len(values) != len(SLIDER_BLOCKS):
        raise ValueError(f"expected {len(SLIDER_BLOCKS)} slider values, got {len(values)}")
    by_name = dict(zip(SLIDER_BLOCKS, values))
    return ",".join(_num(by_name[b]) for b in editor_arch(arch_id).blocks)


def _num(v: float | None) -> str:
    return format(round(float(v or 0.0), 6), "g")


def describe_text(text: str, arch_id: str, presets: PresetBook | None = None) -> str:
    """A one-line note under the weight field: what it means, or what is wrong with it (no raise)."""
    arch = editor_arch(arch_id)
    body = text.strip()
    if not body:
        return "Empty: every block uses the plain alpha (or beta)."
    try:
        toks = tokens_for(body, arch, presets or PresetBook(), "weights")
    except MergeError as e:
        return f"⚠ {e}"
    kind = f"preset {body}, " if "," not in body and len(toks) > 1 else ""
    base = "" if len(toks) == len(arch.blocks) else "; BASE takes the plain alpha/beta"
    rnd = sum(is_random(t) for t in toks)
    rnd_note = f"; {rnd} random (drawn from the seed)" if rnd else ""
    return f"{kind}{len(toks)} values for {arch.label}{base}{rnd_note}."


def preset_names(book: PresetBook, arch_id: str) -> list[str]:
    """Presets that mean something for the layout: their values fit its blocks (`_XL` ones only on
    SDXL, FLUXALL and 61-value user presets only on Flux)."""
    arch = editor_arch(arch_id)
    out = []
    for n in book.names():
        try:
            tokens_for(n, arch, book, "preset")
        except MergeError:
            continue
        out.append(n)
    return out


_NAME = re.compile(r"^[^\s:,#]+$")
_NUMBERISH = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def check_preset_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ParseError("the preset has no name", "type a name such as MY_PRESET")
    if not _NAME.match(name) or _NUMBERISH.match(name) or is_random(name):
        raise ParseError(f"{name!r} cannot be a preset name (no spaces, ':', ',' or '#', not a number, "
                         "not R/U/X)", "use letters, digits and _ such as MY_PRESET")
    if name in builtin_names():
        raise ParseError(f"{name!r} is a built-in preset", "choose another name")
    return name


def save_preset(path: str, name: str, text: str, arch_id: str, book: PresetBook | None = None) -> str:
    """Write `NAME<tab>values` into the user's presets file (replacing a preset of that name, keeping
    every other line and comment). The values are the text's tokens for the layout, presets expanded.
    Returns a status line."""
    name = check_preset_name(name)
    if not text.strip():
        raise ParseError("the weights field is empty", "set the sliders or type weights before saving")
    arch = editor_arch(arch_id)
    toks = tokens_for(text, arch, book or PresetBook(), "weights")
    line = f"{name}\t{','.join(toks)}"
    try:
        with open(path, encoding="utf-8") as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    except (OSError, UnicodeDecodeError) as e:
        raise ParseError(f"cannot read presets file {path} ({e})", "check the file") from None
    parse_preset_text(old, os.path.basename(path))  # refuse to rewrite a file we cannot read
    lines, replaced = [], False
    for ln in old.splitlines():
        m = re.match(r"^\s*([^\s:,]+)\s*[:\t]", ln.split("#", 1)[0])
        if m and m.group(1) == name:
            if not replaced:
                lines.append(line)
            replaced = True
        else:
            lines.append(ln)
    if not replaced:
        lines.append(line)
    _write_atomic(path, "\n".join(lines) + "\n")
    verb = "replaced" if replaced else "saved"
    return f"Preset {name} {verb} ({len(toks)} values for {arch.label}) in {path}."


def _write_atomic(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".presets.", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise MergeError(f"cannot write presets file {path} ({e.strerror})", "check the folder's permissions") from None

