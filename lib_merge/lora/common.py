"""Small helpers the LoRA tools share: dtypes, output checks, cancellation, provenance."""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Protocol, Sequence

import torch

from ..errors import Cancelled, OutputError, RecipeError
from ..io.hashing import HashCache
from ..merge.provenance import file_metadata, models_metadata

Progress = Callable[[int, int, str], None]  # (done, total, what), as the merge engine's
OUT_DTYPES: dict[str, torch.dtype | None] = {"keep": None, "fp16": torch.float16, "bf16": torch.bfloat16,
                                             "fp32": torch.float32}


class CancelToken(Protocol):
    @property
    def cancelled(self) -> bool: ...


def out_dtype(name: str) -> torch.dtype | None:
    if name not in OUT_DTYPES:
        raise RecipeError(f"unknown dtype {name!r}", f"use one of {', '.join(OUT_DTYPES)}")
    return OUT_DTYPES[name]


def check_safetensors_name(path: str) -> None:
    if not path.lower().endswith(".safetensors"):
        raise OutputError(f"output {path} does not end in .safetensors", "name it NAME.safetensors")


def check_cancel(cancel: CancelToken | None) -> None:
    if cancel is not None and cancel.cancelled:
        raise Cancelled()


def provenance(kind: str, recipe: Mapping[str, Any], paths: Sequence[str], cache: HashCache | None,
               metadata_of: Mapping[str, Mapping[str, str]] | None = None,
               extra: Mapping[str, str] | None = None) -> dict[str, str]:
    models, hashes = models_metadata(paths, cache if cache is not None else HashCache(), metadata_of)
    body = {**recipe, "hashes": hashes, "inputs": [os.path.basename(p) for p in paths]}
    return file_metadata(kind, body, models, extra)
