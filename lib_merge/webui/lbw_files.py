"""The LoRA block-weight presets files and the small tools the accordion and the API share.

No webui import here: paths come from a callable (the Settings page inside the webui), so this is
tested on its own. Files are validated before they are written, and written atomically.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from ..arch.blocks import ARCHITECTURES
from ..errors import MergeError, ParseError
from ..io.atomic import atomic_write
from ..lora.elemental import parse_lbwe_text
from ..lora.layouts import LAYOUTS, named
from ..lora.presets import DEFAULT_LBWE_TEXT, PresetBook, format_lbw_presets, parse_lbw_presets
from ..lora.ratios import resolve
from ..lora.tag import parse_tag

LBW_HEADER = ("# LoRA block-weight presets: NAME:values (12, 17, 20 or 26 values, BASE first).\n"
              "# Use them in a prompt as <lora:NAME_OF_LORA:1:1:lbw=PRESET>.\n")


@dataclass(frozen=True)
class PresetFiles:
    """The two user files, at paths resolved when used (a setting may change between calls)."""
    lbw_path: Callable[[], str]
    lbwe_path: Callable[[], str]

    def book(self) -> PresetBook:
        return PresetBook.from_files(_existing(self.lbw_path()), _existing(self.lbwe_path()))

    def book_key(self) -> tuple:
        """Changes whenever either file changes, for caches of resolved weights."""
        return tuple(_stamp(p) for p in (self.lbw_path(), self.lbwe_path()))

    def read_lbw(self) -> str:
        path = self.lbw_path()
        return _read(path) if os.path.isfile(path) else LBW_HEADER + format_lbw_presets(PresetBook.load(), 17)

    def read_lbwe(self) -> str:
        path = self.lbwe_path()
        return _read(path) if os.path.isfile(path) else DEFAULT_LBWE_TEXT

    def save_lbw(self, text: str) -> str:
        path = self.lbw_path()
        parse_lbw_presets(text, path)
        _write(path, text)
        return f"Saved {path}."

    def save_lbwe(self, text: str) -> str:
        path = self.lbwe_path()
        parse_lbwe_text(text, path)
        _write(path, text)
        return f"Saved {path}."

    def check(self, tag: str, arch_id: str) -> dict:
        return check_tag(tag, arch_id, self.book())


def _existing(path: str) -> str | None:
    return path if path and os.path.isfile(path) else None


def _stamp(path: str) -> tuple[str, float | None]:
    try:
        return path, os.stat(path).st_mtime
    except OSError:
        return path, None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ParseError(f"cannot read {path} ({getattr(e, 'strerror', None) or 'not UTF-8 text'})",
                         "check the file, or the path in Settings → BlockMerge") from None


def _write(path: str, text: str) -> None:
    if not text.endswith("\n"):
        text += "\n"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with atomic_write(path, overwrite=True) as f:
            f.write(text.encode("utf-8"))
    except OSError as e:
        raise MergeError(f"cannot write {path} ({e.strerror})", "check the path in Settings → BlockMerge") from None


def check_tag(text: str, arch_id: str, presets: PresetBook) -> dict:
    """What a tag does on an architecture: every block's ratio and strength, the steps, the seed."""
    if arch_id not in ARCHITECTURES:
        raise ParseError(f"unknown architecture {arch_id!r}", f"use one of {', '.join(ARCHITECTURES)}")
    arch = ARCHITECTURES[arch_id]
    tag = parse_tag(text.strip(), presets, arch)
    r = resolve(tag, arch, presets)
    counts = [n for n, lay in LAYOUTS.items() if (lay.family == "sdxl") == (arch.id == "sdxl")]
    return {
        "tag": text.strip(), "name": tag.name, "arch": arch.id, "te": tag.te, "unet": tag.unet,
        "blocks": dict(r.blocks),
        "strengths": {b: v * (tag.te if b == "BASE" else tag.unet) for b, v in r.blocks.items()},
        "layouts": {str(n): list(named(LAYOUTS[n], r.blocks)) for n in counts},
        "elemental": [{"rule": rule.text, "ratio": v} for rule, v in r.rules],
        "start": tag.start, "stop": tag.stop, "seed": r.seed,
    }
