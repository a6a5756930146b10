"""Open a model file of either format behind one small interface.

`.safetensors` is read lazily (header only until a tensor is asked for); `.ckpt` / `.pt` is
unpickled with `weights_only=True` — never arbitrary code — and kept in memory, since pickles
cannot be read lazily.
"""
from __future__ import annotations

import os
import pickle
import re
import warnings
from typing import Protocol

import torch

from ..errors import ModelFileError
from .safetensors_io import DTYPES, NAMES, SafetensorsReader, TensorInfo

SAFETENSORS_EXT = (".safetensors",)
PICKLE_EXT = (".ckpt", ".pt", ".pth", ".bin")


class ModelSource(Protocol):
    path: str
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]

    def read_tensor(self, key: str, out: memoryview, first: int = 0, count: int | None = None) -> torch.Tensor: ...

    def get(self, key: str) -> torch.Tensor: ...

    def close(self) -> None: ...


def _unsafe_reason(text: str) -> str:
    """What the refused pickle asked for, from torch's message (worded differently across 2.1-2.9)."""
    m = re.search(r"GLOBAL\s+([\w.]+)", text) or re.search(r"[Uu]nsupported (?:global|class)[:\s]+([\w.]+)", text)
    if m:
        return f"its pickle asks for {m.group(1)}, which is not tensor data and could run code when loaded"
    m = re.search(r"[Uu]nsupported operand\s+(\S+)", text)
    if m:
        return (f"its pickle uses opcode {m.group(1)}, which the safe loader does not accept (a damaged file, "
                "or not a plain tensor checkpoint)")
    return "its pickle holds more than tensors, and loading it could run code"


def _first_sentence(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "unknown error")
    m = re.match(r"(.{20,300}?[.!?])(\s|$)", line)
    return (m.group(1) if m else line[:300]).rstrip(".")


class PickleSource:
    """A .ckpt state dict held in memory; same reading interface as SafetensorsReader."""

    def __init__(self, path: str):
        self.path = path
        self.metadata: dict[str, str] = {}
        name = os.path.basename(path)
        if not os.path.isfile(path):
            raise ModelFileError(f"model file not found: {path}", "check the path and the models folder")
        try:
            with warnings.catch_warnings():  # torch's notes about pickle protocols are not the user's business
                warnings.simplefilter("ignore")
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise ModelFileError(f"{name} cannot be loaded safely: {_unsafe_reason(str(e))}",
                                 "if you trust its source, convert it to .safetensors with a tool you trust") from None
        except (RuntimeError, EOFError, ValueError, OSError) as e:
            raise ModelFileError(f"{name} is not a readable checkpoint ({_first_sentence(str(e))})",
                                 "check the file; re-download it if it is corrupt") from None
        sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
        if not isinstance(sd, dict):
            raise ModelFileError(f"{name} holds no state dict", "pick a model checkpoint")
        self._t = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor) and v.dtype in NAMES}
        self.tensors = {k: TensorInfo(NAMES[v.dtype], tuple(v.shape), 0, v.numel() * v.element_size())
                        for k, v in self._t.items()}

    def read_tensor(self, key: str, out: memoryview, first: int = 0, count: int | None = None) -> torch.Tensor:
        flat = self._t[key].reshape(-1)
        return flat[first:] if count is None else flat[first:first + count]

    def get(self, key: str) -> torch.Tensor:
        return self._t[key]

    def close(self) -> None:
        self._t = {}


GGUF_MAGIC = b"GGUF"


def refuse_gguf(path: str) -> None:
    """A GGUF file (llama.cpp / city96 quantised: Q8_0, Q5_K, Q4_K...) by its extension or its magic
    bytes: one line naming the format and what to do instead."""
    magic = b""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError:
        pass
    if path.lower().endswith(".gguf") or magic == GGUF_MAGIC:
        raise ModelFileError(f"{os.path.basename(path)} is a GGUF quantised model (Q8_0/Q5_K/Q4_K...), which cannot "
                             "be merged", "merge the bf16, fp16 or fp8 .safetensors versions of the models, then "
                             "quantise the result to GGUF with its own tools if you need GGUF")


def open_model(path: str) -> ModelSource:
    refuse_gguf(path)
    low = path.lower()
    if low.endswith(PICKLE_EXT):
        return PickleSource(path)
    if not low.endswith(SAFETENSORS_EXT) and not os.path.exists(path):
        raise ModelFileError(f"model file not found: {path}", "check the path and the models folder")
    return SafetensorsReader(path)


def read_shapes(path: str) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Header-only view of a model: what detection and planning need."""
    refuse_gguf(path)
    if path.lower().endswith(PICKLE_EXT):
        src = PickleSource(path)
        return src.tensors, src.metadata
    from .safetensors_io import read_header
    return read_header(path)


__all__ = ["ModelSource", "PickleSource", "open_model", "read_shapes", "DTYPES", "NAMES", "TensorInfo"]
