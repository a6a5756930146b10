"""Reading and writing model files."""
from __future__ import annotations

from .atomic import atomic_write, check_output
from .hashing import HashCache, legacy_hash, sha256_file
from .models import ModelSource, open_model, read_shapes
from .safetensors_io import SafetensorsReader, SafetensorsWriter, TensorInfo, read_header, save_tensors

__all__ = ["atomic_write", "check_output", "HashCache", "legacy_hash", "sha256_file", "ModelSource",
           "open_model", "read_shapes", "SafetensorsReader", "SafetensorsWriter", "TensorInfo",
           "read_header", "save_tensors"]
