"""Write a file so that it either appears whole or not at all, and never clobbers without consent."""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import BinaryIO, Iterator

from ..errors import OutputError

MAX_NAME = 200  # bytes; most filesystems allow 255, leave room for the temp suffix


def shorten(path: str) -> str:
    """Shorten an over-long file name, keeping its extension (REFERENCE §6)."""
    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    if len(name.encode()) <= MAX_NAME:
        return path
    budget = MAX_NAME - len(ext.encode())
    stem = stem.encode()[:budget].decode("utf-8", "ignore")
    return os.path.join(folder, stem + ext)


def check_output(path: str, overwrite: bool) -> None:
    if os.path.isdir(path):
        raise OutputError(f"output {path} is a folder", "give a file name such as merged.safetensors")
    if os.path.exists(path) and not overwrite:
        raise OutputError(f"output {path} exists already", "choose another name or pass --overwrite")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputError(f"output folder {folder} does not exist", "create it or choose another folder")


@contextlib.contextmanager
def atomic_write(path: str, overwrite: bool = False) -> Iterator[BinaryIO]:
    """Yield a temp file beside `path`; on success it becomes `path`, on any error it vanishes."""
    check_output(path, overwrite)
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name[:60]}.", suffix=".partial", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:  # link fails if the name appeared meanwhile: never clobber
                os.link(tmp, path)
            except FileExistsError:
                raise OutputError(f"output {path} appeared while merging", "choose another name or pass --overwrite") from None
            except OSError:  # filesystems without hard links
                if os.path.exists(path):
                    raise OutputError(f"output {path} exists already", "choose another name or pass --overwrite") from None
                os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    else:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
