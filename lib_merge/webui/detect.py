"""Which webui we run in, decided once by what is importable, never by version strings (WEBUI.md §0).

Forge (the `backend/` architecture) has both `modules_forge` and `backend.diffusion_engine`.
`modules_forge` without `backend` is an older Forge built on `ldm_patched`: unsupported.
Anything else that has `modules` is treated as A1111 1.10. Gradio's major version is read on its own,
since a gradio 4 A1111 fork is possible.
"""
from __future__ import annotations

import enum
import functools
import importlib.util
import sys
from dataclasses import dataclass


class Kind(enum.Enum):
    A1111 = "a1111"
    FORGE = "forge"
    FORGE_LEGACY = "forge-legacy"  # modules_forge on ldm_patched: not supported
    NONE = "none"  # no webui: the library or the standalone tab


@dataclass(frozen=True)
class Webui:
    kind: Kind
    gradio_major: int | None

    @property
    def is_forge(self) -> bool:
        return self.kind is Kind.FORGE

    @property
    def supported(self) -> bool:
        return self.kind in (Kind.A1111, Kind.FORGE)

    @property
    def label(self) -> str:
        return {Kind.A1111: "AUTOMATIC1111", Kind.FORGE: "Forge", Kind.FORGE_LEGACY: "Forge (old ldm_patched)",
                Kind.NONE: "no webui"}[self.kind]


def _has(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent that is not a package, or a half-initialised module
        return False


def _gradio_major() -> int | None:
    gr = sys.modules.get("gradio")
    version = getattr(gr, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as dist_version
            version = dist_version("gradio")
        except Exception:  # noqa: BLE001 - not installed, or broken metadata
            return None
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


@functools.lru_cache(maxsize=None)
def detect() -> Webui:
    """The webui of this process (computed on the first call, then the same answer)."""
    if _has("modules_forge"):
        kind = Kind.FORGE if _has("backend.diffusion_engine") else Kind.FORGE_LEGACY
    elif _has("modules"):
        kind = Kind.A1111
    else:
        kind = Kind.NONE
    return Webui(kind, _gradio_major())


def is_forge() -> bool:
    return detect().is_forge
