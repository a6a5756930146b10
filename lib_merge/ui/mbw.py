"""The block-weight editor's logic: sliders <-> weight text, the architecture of model A, presets.

The editor always has 26 sliders named after the SD1/SD2 blocks; on SDXL the six blocks SDXL lacks
(IN09-IN11, OUT09-OUT11) are hidden and the other 20 are exactly SDXL's blocks, in order.
"""
from __future__ import annotations

import os
import re
import tempfile

from ..arch import SD1, SDXL, Architecture, detect
from ..errors import MergeError, ParseError
from ..io.models import read_shapes
from ..merge.presets import PresetBook, builtin_names, parse_preset_text
from ..merge.weights import is_random, tokens_for

SLIDER_BLOCKS: tuple[str, ...] = SD1.blocks  # the 26 sliders, BASE first
EDITOR_ARCHS = ("sd1", "sdxl")  # the editor's two layouts; SD2 shares SD1's blocks


def editor_arch(arch_id: str) -> Architecture:
    return SDXL if arch_id == "sdxl" else SD1


def shown_blocks(arch_id: str) -> frozenset[str]:
    return frozenset(editor_arch(arch_id).blocks)


def detect_editor_arch(path: str) -> tuple[str, str]:
    """(editor layout id, label such as 'SDXL' or 'SD2.x inpaint') of a model file, from its header."""
    tensors, _ = read_shapes(path)
    info = detect({k: v.shape for k, v in tensors.items()}, os.path.basename(path))
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
    """Presets that mean something for the layout (`_XL` ones only on SDXL)."""
    blocks = editor_arch(arch_id).blocks
    return [n for n in book.names() if book.lookup(n, blocks) is not None]


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

