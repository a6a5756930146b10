"""Which webui we run in, decided once by what is importable, never by version strings (WEBUI.md §0,
NEO_FLUX.md A1).

- Forge Neo (Haoming02/sd-webui-forge-classic, branch `neo`): `modules_forge` and a `backend` whose
  `diffusion_engine` has engines lllyasviel's Forge never had. Read in Neo's source: commit 283cb2c4
  (2025-11-29) has `backend/diffusion_engine/{wan,qwen,zimage,lumina}.py`; later commits add
  `flux2.py`, `anima.py`, `ernie.py`. lllyasviel Forge (dfdcbab6) has only base, chroma, flux, sd15,
  sd20, sd35 and sdxl. Neo's `modules_forge/forge_version.py` says `version = "neo"` (283cb2c4 and
  991be0ed); it is read as a cross-check only (a fork may keep the engines and change the string).
- lllyasviel Forge: `modules_forge` and `backend.diffusion_engine`, none of Neo's engines.
- `modules_forge` or `ldm_patched` without `backend`: an older Forge, Forge Classic or reForge, all
  built on `ldm_patched`: unsupported (one message at start-up, nothing else registered).
- Anything else that has `modules` is treated as A1111 1.10.
Gradio's major version is read on its own, since a gradio 4 A1111 fork is possible.
"""
from __future__ import annotations

import enum
import functools
import importlib.util
import logging
import os
import re
import sys
from dataclasses import dataclass


log = logging.getLogger("lib_merge")

# engines only Forge Neo ships (see the module docstring for the commits read)
NEO_ENGINES = ("flux2", "zimage", "wan", "qwen", "lumina", "anima", "ernie")


class Kind(enum.Enum):
    A1111 = "a1111"
    FORGE = "forge"
    NEO = "neo"  # Forge Neo: Forge's backend/ plus its own engines and loader changes
    FORGE_LEGACY = "forge-legacy"  # modules_forge / ldm_patched without backend/: not supported
    NONE = "none"  # no webui: the library or the standalone tab


@dataclass(frozen=True)
class Webui:
    kind: Kind
    gradio_major: int | None

    @property
    def is_forge(self) -> bool:
        """Forge's backend/ architecture: lllyasviel Forge and Forge Neo."""
        return self.kind in (Kind.FORGE, Kind.NEO)

    @property
    def is_neo(self) -> bool:
        return self.kind is Kind.NEO

    @property
    def supported(self) -> bool:
        return self.kind in (Kind.A1111, Kind.FORGE, Kind.NEO)

    @property
    def label(self) -> str:
        return {Kind.A1111: "AUTOMATIC1111", Kind.FORGE: "Forge", Kind.NEO: "Forge Neo",
                Kind.FORGE_LEGACY: "an ldm_patched Forge (old Forge, Forge Classic or reForge)",
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


def forge_version() -> str | None:
    """`modules_forge/forge_version.py`'s `version`, read as text (not imported), or None."""
    try:
        spec = importlib.util.find_spec("modules_forge.forge_version")
    except (ImportError, ValueError):
        return None
    path = getattr(spec, "origin", None) if spec is not None else None
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            m = re.search(r"""^version\s*=\s*['"]([^'"]*)['"]""", f.read(), re.M)
    except OSError:
        return None
    return m.group(1) if m else None


def _has_neo_engine() -> bool:
    return any(_has(f"backend.diffusion_engine.{name}") for name in NEO_ENGINES)


@functools.lru_cache(maxsize=None)
def detect() -> Webui:
    """The webui of this process (computed on the first call, then the same answer)."""
    if _has("modules_forge") or _has("ldm_patched"):
        if not _has("backend.diffusion_engine"):
            kind = Kind.FORGE_LEGACY
        else:
            engines, version = _has_neo_engine(), forge_version()
            kind = Kind.NEO if engines or version == "neo" else Kind.FORGE
            if engines != (version == "neo"):
                log.warning("BlockMerge: this webui %s Forge Neo's engines but its forge_version is %r; "
                            "treating it as %s", "has" if engines else "lacks", version,
                            "Forge Neo" if kind is Kind.NEO else "Forge")
    elif _has("modules"):
        kind = Kind.A1111
    else:
        kind = Kind.NONE
    return Webui(kind, _gradio_major())


def is_forge() -> bool:
    """True in lllyasviel Forge and in Forge Neo (both have Forge's backend/ architecture)."""
    return detect().is_forge


def is_neo() -> bool:
    return detect().is_neo
