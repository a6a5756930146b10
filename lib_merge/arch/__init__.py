"""Architectures, their block tables, detection from key names, and real checkpoint layouts."""
from __future__ import annotations

from .blocks import ARCHITECTURES, SD1, SD2, SDXL, Architecture, Component
from .detect import ModelInfo, detect

__all__ = ["ARCHITECTURES", "SD1", "SD2", "SDXL", "Architecture", "Component", "ModelInfo", "detect"]
