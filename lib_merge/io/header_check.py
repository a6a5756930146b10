"""Validate a safetensors header as strictly as the `safetensors` library does, worded per fault.

What the library (0.4-0.8, `SafeTensors::read_metadata` / `validate`) refuses, we refuse too, so a
file we accept can be loaded by the webui, and nothing we pass on produces a file it rejects:
- `__metadata__` a table of strings to strings (or absent);
- each entry: a known dtype, a shape of whole numbers >= 0, `data_offsets` two whole numbers >= 0,
  start <= end, end - start exactly the shape's byte count (no overflow computing it);
- sorted by offsets, tensors tile the data area from 0 with no gap and no overlap;
- the data area ends exactly at the end of the file (not truncated, nothing after it).
"""
from __future__ import annotations

import math
from typing import Any, Callable

from ..errors import ModelFileError

_FIX = "download or save the model again; the file is corrupt or was not written by a safetensors writer"
_USIZE = 1 << 64


def _whole(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_entry(name: str, key: str, v: Any, dtypes: dict, itemsize: Callable[[str], int]) -> tuple[str, tuple[int, ...], int, int]:
    """(dtype, shape, start, end) of one header entry, offsets relative to the data area."""
    def bad(what: str) -> ModelFileError:
        return ModelFileError(f"{name}: tensor {key!r} {what}", _FIX)

    if not isinstance(v, dict) or not {"dtype", "shape", "data_offsets"} <= v.keys():
        raise bad("has a malformed header entry (needs dtype, shape and data_offsets)")
    dtype, shape, offs = v["dtype"], v["shape"], v["data_offsets"]
    if not isinstance(dtype, str):
        raise bad(f"has a dtype that is not a name ({dtype!r})")
    if dtype not in dtypes:
        raise ModelFileError(f"{name}: tensor {key!r} has unsupported dtype {dtype}",
                             "convert the model to fp16/bf16/fp32 first")
    if not isinstance(shape, list) or not all(_whole(d) for d in shape):
        raise bad(f"has a shape that is not a list of whole numbers ({shape!r})")
    if any(d < 0 for d in shape):
        raise bad(f"has a negative dimension in its shape {shape}")
    if any(d >= _USIZE for d in shape):
        raise bad(f"has a dimension too large for any file in its shape {shape}")
    if not isinstance(offs, list) or len(offs) != 2 or not all(_whole(o) for o in offs):
        raise bad(f"has data_offsets that are not two whole numbers ({offs!r})")
    s, e = offs
    if s < 0 or e < 0:
        raise bad(f"has a negative data offset {offs}")
    if e < s:
        raise bad(f"has data_offsets {offs} that end before they start")
    nbytes = math.prod(shape) * itemsize(dtype)
    if nbytes >= _USIZE:
        raise bad(f"has a shape {shape} whose byte count overflows")
    if e - s != nbytes:
        raise bad(f"has shape {shape} of {dtype}, which needs {nbytes} bytes, but its data_offsets {offs} "
                  f"span {e - s}")
    return dtype, tuple(shape), s, e


def check_layout(name: str, spans: dict[str, tuple[int, int]], data_size: int) -> list[str]:
    """Keys in data order; refuses overlaps, gaps, data past the end and bytes after the last tensor."""
    order = sorted(spans, key=lambda k: spans[k])
    pos = 0
    prev = None
    for k in order:
        s, e = spans[k]
        if s < pos:
            raise ModelFileError(f"{name}: tensor {k!r} overlaps the data of tensor {prev!r} "
                                 f"(starts at byte {s}, {prev!r} ends at {pos})", _FIX)
        if s > pos:
            raise ModelFileError(f"{name}: there is a gap of {s - pos} bytes before tensor {k!r} "
                                 "(tensors must be stored back to back)", _FIX)
        pos, prev = e, k
    if pos > data_size:
        raise ModelFileError(f"{name} is truncated: its header says {pos} bytes of tensor data, the file holds "
                             f"{data_size}", "download or save the model again")
    if pos < data_size:
        raise ModelFileError(f"{name} has {data_size - pos} bytes after its last tensor (not a valid "
                             "safetensors file)", _FIX)
    return order


def check_metadata(name: str, meta: Any) -> dict[str, str]:
    if meta is None:
        return {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ModelFileError(f"{name}: __metadata__ must be a table of text values", _FIX)
    return dict(meta)
