"""safetensors without loading whole files: header parsing, positioned reads, a streaming writer.

The reader never maps the file: tensors (or slices of them) are read with positioned reads into
buffers the caller owns and reuses, which is what keeps a merge's memory at a few tensors.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Mapping

import torch

from ..errors import ModelFileError
from .header_check import check_entry, check_layout, check_metadata
from .writeback import Writeback, file_descriptor

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
for _name, _attr in (("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2")):
    if hasattr(torch, _attr):
        DTYPES[_name] = getattr(torch, _attr)
NAMES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}
FLOAT_NAMES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}
MAX_HEADER = 100 * 1024 * 1024


_ITEMSIZE = {name: torch.empty((), dtype=dt).element_size() for name, dt in DTYPES.items()}


def itemsize(dtype: str) -> int:
    return _ITEMSIZE[dtype]


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lies in its file: dtype name, shape, absolute [start, end) byte offsets."""
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_NAMES


def read_header(path: str) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """({key: TensorInfo} in file order, metadata) of a .safetensors file; a clear error if it isn't one."""
    name = os.path.basename(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ModelFileError(f"{name} is empty or truncated ({size} bytes)",
                                     "download or save the model again")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER or n + 8 > size:
                raise ModelFileError(f"{name} is not a safetensors file (bad header length)",
                                     "check the file: a .ckpt must end in .ckpt, a partial download must be redone")
            raw = f.read(n)
    except FileNotFoundError:
        raise ModelFileError(f"model file not found: {path}", "check the path and the models folder") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path} is a folder, not a model file", "give the path of a .safetensors file") from None
    except PermissionError:
        raise ModelFileError(f"cannot read {path} (permission denied)", "check the file's permissions") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{name} is not a safetensors file (unreadable header)",
                             "check the file; re-download it if it is corrupt") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{name} is not a safetensors file (header is not a table)", "check the file")
    meta = check_metadata(name, header.pop("__metadata__", None))
    base = 8 + n
    spans: dict[str, tuple[int, int]] = {}
    dts: dict[str, tuple[str, tuple[int, ...]]] = {}
    for key, v in header.items():
        dtype, shape, s, e = check_entry(name, key, v, DTYPES, itemsize)
        spans[key] = (s, e)
        dts[key] = (dtype, shape)
    order = check_layout(name, spans, size - base)
    tensors = {k: TensorInfo(dts[k][0], dts[k][1], base + spans[k][0], base + spans[k][1]) for k in order}
    return tensors, meta


class SafetensorsReader:
    """Positioned reads of tensors or slices of them into caller-owned buffers."""

    def __init__(self, path: str):
        self.path = path
        self.tensors, self.metadata = read_header(path)
        self._f: BinaryIO = open(path, "rb", buffering=0)
        self._fd = self._f.fileno()
        self.hasher = None  # a hashing.StreamHasher fed every read, when the merge hashes this file

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "SafetensorsReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read_bytes(self, key: str, out: memoryview, first: int = 0, count: int | None = None) -> memoryview:
        """Read elements [first, first+count) of `key` into `out`; returns the filled view."""
        info = self.tensors[key]
        isz = itemsize(info.dtype)
        count = info.numel - first if count is None else count
        n = count * isz
        view = out[:n]
        _pread_exact(self._fd, self._f, view, info.start + first * isz, self.path)
        if self.hasher is not None:
            self.hasher.feed(info.start + first * isz, view)
        return view

    def read_tensor(self, key: str, out: memoryview, first: int = 0, count: int | None = None) -> torch.Tensor:
        """A flat tensor viewing `out` with elements [first, first+count) of `key`."""
        info = self.tensors[key]
        view = self.read_bytes(key, out, first, count)
        if len(view) == 0:
            return torch.empty(0, dtype=DTYPES[info.dtype])
        return torch.frombuffer(view, dtype=DTYPES[info.dtype])

    def prefetch(self, key: str, first: int = 0, count: int | None = None) -> None:
        """Ask the kernel to start reading a range we will need soon (cold caches overlap I/O)."""
        self._advise(key, first, count, "POSIX_FADV_WILLNEED")

    def drop(self, key: str, first: int = 0, count: int | None = None) -> None:
        """Tell the kernel a range will not be read again (frees its page-cache pages now)."""
        self._advise(key, first, count, "POSIX_FADV_DONTNEED")

    def _advise(self, key: str, first: int, count: int | None, advice: str) -> None:
        if not hasattr(os, "posix_fadvise"):  # Linux-only hints; elsewhere the kernel guesses
            return
        info = self.tensors[key]
        isz = itemsize(info.dtype)
        count = info.numel - first if count is None else count
        os.posix_fadvise(self._fd, info.start + first * isz, count * isz, getattr(os, advice))

    def get(self, key: str) -> torch.Tensor:
        """A fresh tensor with the full value of `key` (for small tensors and one-off reads)."""
        info = self.tensors[key]
        buf = bytearray(info.nbytes)
        t = self.read_tensor(key, memoryview(buf))
        return t.reshape(info.shape).clone() if info.numel else torch.empty(info.shape, dtype=DTYPES[info.dtype])


def _pread_exact(fd: int, f: BinaryIO, view: memoryview, offset: int, path: str) -> None:
    done = 0
    while done < len(view):
        if hasattr(os, "preadv"):
            got = os.preadv(fd, [view[done:]], offset + done)
        else:  # Windows has no preadv; the reader is used from one thread at a time
            f.seek(offset + done)
            got = f.readinto(view[done:])
        if not got:
            raise ModelFileError(f"{os.path.basename(path)} is truncated (unexpected end of file)",
                                 "download or save the model again")
        done += got


def header_bytes(entries: Iterable[tuple[str, str, tuple[int, ...]]], metadata: Mapping[str, str] | None,
                 size: int = 0) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """Serialise a header for tensors laid out in the given order; returns (bytes incl. length, offsets).
    `size`: pad the JSON with spaces to exactly this many bytes in all (a multiple of 8; trailing
    spaces are how the format aligns its data anyway); ValueError if the header is longer."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offsets: dict[str, tuple[int, int]] = {}
    pos = 0
    for key, dtype, shape in entries:
        n = math.prod(shape) * itemsize(dtype)
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [pos, pos + n]}
        offsets[key] = (pos, pos + n)
        pos += n
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    if size:
        if size % 8 or len(raw) + 8 > size:
            raise ValueError(f"header of {len(raw) + 8} bytes does not fit in {size}")
        raw += b" " * (size - 8 - len(raw))
    return struct.pack("<Q", len(raw)) + raw, offsets


class SafetensorsWriter:
    """Writes the header first, then tensor bytes in header order, straight to an open file."""

    def __init__(self, f: BinaryIO, entries: list[tuple[str, str, tuple[int, ...]]], metadata: Mapping[str, str] | None,
                 header_size: int = 0, *, hash_output: bool = False):
        """`header_size`: reserve that many bytes for the header (see `rewrite_metadata`).
        `hash_output`: compute the file's sha256 from the bytes as they are written (`sha256()`), so
        whoever needs it does not read the file again."""
        self._f = f
        self._entries = entries
        head, offsets = header_bytes(entries, metadata, header_size)
        self.header_len = len(head)
        self._head = head
        self._sha = hashlib.sha256(head) if hash_output else None
        f.write(head)
        self._pos = len(head)
        self._writeback = Writeback(file_descriptor(f), 0)
        self._order = [k for k, _, _ in entries]
        self._sizes = {k: offsets[k][1] - offsets[k][0] for k in self._order}
        self._i = 0
        self._left = self._sizes[self._order[0]] if self._order else 0
        self._skip_empty()  # zero-size tensors first in the order (e.g. Comfy's `scaled_fp8` marker) have no bytes

    def _skip_empty(self) -> None:
        while self._left == 0 and self._i < len(self._order):
            self._i += 1
            if self._i < len(self._order):
                self._left = self._sizes[self._order[self._i]]

    def write(self, key: str, data) -> None:
        """Append bytes (or a contiguous tensor) that belong to `key`; a key may come in several parts.
        Zero-size tensors need no write (nothing to append); writing one is a no-op."""
        if key in self._sizes and self._sizes[key] == 0:
            return
        if self._i >= len(self._order) or key != self._order[self._i]:
            expected = self._order[self._i] if self._i < len(self._order) else "nothing"
            raise RuntimeError(f"writer got {key!r} but expected {expected!r}")
        mv = _as_bytes(data)
        if len(mv) > self._left:
            raise RuntimeError(f"too many bytes for {key!r}")
        self._f.write(mv)
        if self._sha is not None:
            self._sha.update(mv)
        self._pos += len(mv)
        self._writeback.advance(self._pos)
        self._left -= len(mv)
        self._skip_empty()

    def drop_behind(self) -> None:
        """Evict the written bytes from the page cache as they reach the disk (io/writeback.py)."""
        self._writeback.drop_behind()

    def finish(self) -> None:
        if self._i != len(self._order):
            raise RuntimeError(f"output incomplete: {self._order[self._i]!r} was never written")

    def sha256(self) -> str | None:
        """The sha256 of the whole file as written (header and every tensor), or None: not asked for
        (`hash_output`), the output incomplete, or the header rewritten after data followed it."""
        if self._sha is None or self._i != len(self._order):
            return None
        return self._sha.hexdigest()

    def rewrite_metadata(self, metadata: Mapping[str, str] | None) -> None:
        """Overwrite the header in place with new metadata, padded to the size first written (the
        tensors stay where they are). For values only known at the end, e.g. the inputs' sha256
        computed from the merge's own reads. The file must be seekable."""
        head, _ = header_bytes(self._entries, metadata, self.header_len)
        if head == self._head:
            return  # the header written first was final already: nothing to change, the digest holds
        self._head = head
        self._sha = None  # the bytes hashed began with the old header: the digest is unknown now
        end = self._f.tell()
        self._f.seek(0)
        self._f.write(head)
        self._f.seek(end)


def _as_bytes(data) -> memoryview:
    if isinstance(data, torch.Tensor):
        t = data.contiguous()
        if t.dtype in (torch.bfloat16,) or t.dtype not in _NUMPY_OK:
            t = t.view(torch.int16) if t.element_size() == 2 else t.view(torch.uint8)
        return memoryview(t.numpy()).cast("B")
    return memoryview(data).cast("B")


_NUMPY_OK = {torch.float64, torch.float32, torch.float16, torch.int64, torch.int32, torch.int16,
             torch.int8, torch.uint8, torch.bool}


def save_tensors(path_or_file, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """Write a small dict of tensors (tests, LoRA files). Large outputs go through the engine."""
    entries = [(k, NAMES[t.dtype], tuple(t.shape)) for k, t in tensors.items()]

    def run(f: BinaryIO) -> None:
        w = SafetensorsWriter(f, entries, metadata)
        for k, t in tensors.items():
            if t.numel():
                w.write(k, t.detach().cpu())
        w.finish()

    if hasattr(path_or_file, "write"):
        run(path_or_file)
    else:
        with open(path_or_file, "wb") as f:
            run(f)
