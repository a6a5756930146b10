"""One error, worded for the surface that shows it: the command line, the tab, or the REST API.

The core writes its messages once, in the command line's words (`--alpha-blocks`, `python -m
lib_merge presets`): that is the one source of truth. Each other surface reads the same message
through `for_surface`, which names the field as that surface does — the tab's label, the JSON
field of a recipe — from the one table below.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Surface(Enum):
    CLI = "cli"
    TAB = "tab"
    REST = "rest"


@dataclass(frozen=True)
class Field:
    json: str  # the Recipe field / JSON key
    cli: str  # the flag
    tab: str  # how the tab labels it


FIELDS: tuple[Field, ...] = (
    Field("alpha_blocks", "--alpha-blocks", "alpha block weights"),
    Field("beta_blocks", "--beta-blocks", "beta block weights"),
    Field("alpha", "--alpha", "alpha"),
    Field("beta", "--beta", "beta"),
    Field("gamma", "--gamma", "gamma"),
    Field("mode", "--mode", "merge mode"),
    Field("calc", "--calc", "calc mode"),
    Field("key_map", "--key-map", "key map"),
    Field("include", "--include", "include"),
    Field("exclude", "--exclude", "exclude"),
    Field("elemental", "--elemental", "elemental"),
    Field("adjust", "--adjust", "adjust"),
    Field("seed", "--seed", "seed"),
    Field("x_range", "--x-range", "X range"),
    Field("presets_file", "--presets", "presets file"),
    Field("dtype", "--dtype", "output precision"),
    Field("merge_vae", "--merge-vae", "merge the VAE"),
    Field("overwrite", "--overwrite", "Overwrite"),
    Field("allow_extreme", "--allow-extreme", "allow extreme weights"),
)

# whole phrases first: what the user does differs, not just the field's name
_PHRASES: dict[Surface, tuple[tuple[str, str], ...]] = {
    Surface.TAB: (
        ("pass --overwrite", "tick Overwrite"),
        (", or pass --allow-extreme if you mean it", " (the tab keeps to that range; the command line and REST can go beyond)"),
        ("pass --seed N", "set a seed"),
        ("pass --key-map MAP.json", "pick a map in Key map"),
        ("use --mode ", "use merge mode "),
        ("`python -m lib_merge presets`", "the Preset dropdown"),
        ("python -m lib_merge presets", "the Preset dropdown"),
    ),
    Surface.REST: (
        ("pass --overwrite", 'send "overwrite": true'),
        ("pass --allow-extreme", 'send "allow_extreme": true'),
        ("pass --seed N", 'set "seed"'),
        ("pass --key-map MAP.json", 'send "key_map": "MAP.json"'),
        ("use --mode ", 'use "mode": '),
        ("`python -m lib_merge presets`", "GET /blockmerge/v1/presets"),
        ("python -m lib_merge presets", "GET /blockmerge/v1/presets"),
    ),
}

_FLAG = re.compile(r"--[a-z][a-z0-9-]*(?![a-z0-9-])")
_BY_FLAG = {f.cli: f for f in FIELDS}


def for_surface(message: str, surface: Surface) -> str:
    """The message with the command line's words replaced by the surface's own."""
    if surface is Surface.CLI:
        return message
    for cli, words in _PHRASES[surface]:
        message = message.replace(cli, words)

    def name(m: re.Match) -> str:
        f = _BY_FLAG.get(m.group(0))
        if f is None:
            return m.group(0)
        return f.tab if surface is Surface.TAB else f'"{f.json}"'
    return _FLAG.sub(name, message)


def fields_named(message: str) -> list[str]:
    """The JSON fields a command-line message is about, in order (for a REST error's `fields`)."""
    out: list[str] = []
    for m in _FLAG.finditer(message):
        f = _BY_FLAG.get(m.group(0))
        if f is not None and f.json not in out:
            out.append(f.json)
    return out
