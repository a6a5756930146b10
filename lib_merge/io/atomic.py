"""Write a file so that it either appears whole or not at all, and never clobbers without consent.

The temp file sits beside the output as `.NAME.PID.XXXX.partial`: the PID lets a later run (or
`python -m lib_merge clean`) tell a dead process's leftover (SIGKILL, power loss) from a merge still
running, and remove only the former.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import tempfile
from typing import BinaryIO, Iterable, Iterator

from ..errors import OutputError

log = logging.getLogger("lib_merge")

MAX_NAME = 200  # bytes; most filesystems allow 255, leave room for the temp suffix
_PARTIAL = re.compile(r"^\..*\.(\d+)\.[^.]+\.partial$")
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}


def shorten(path: str) -> str:
    """Shorten an over-long file name, keeping its extension (REFERENCE §6)."""
    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    if len(name.encode()) <= MAX_NAME:
        return path
    budget = MAX_NAME - len(ext.encode())
    stem = stem.encode()[:budget].decode("utf-8", "ignore")
    return os.path.join(folder, stem + ext)


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n < 10e9 else f"{n / 1e9:.1f} GB"


def check_output(path: str, overwrite: bool, inputs: Iterable[str] = (), size: int | None = None) -> None:
    """Everything that can be said about the output before any work: not a folder, not existing
    (unless overwrite), not one of the files the same job reads (same inode, whatever the name or
    link), a folder that exists and is writable, and room for `size` bytes when it is known."""
    if os.path.isdir(path):
        raise OutputError(f"output {path} is a folder", "give a file name such as merged.safetensors")
    if os.path.exists(path):
        if not overwrite:
            raise OutputError(f"output {path} exists already", "choose another name or pass --overwrite")
        for src in inputs:
            with contextlib.suppress(OSError):
                if os.path.samefile(path, src):
                    raise OutputError(f"output {path} is also an input of this job ({src})",
                                      "write to another file name; an output never replaces a file it is made from")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputError(f"output folder {folder} does not exist", "create it or choose another folder")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output folder {folder} is not writable (read-only or no permission)",
                          "choose a folder you can write to")
    if size is not None:
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(folder).free
            if size > free:
                raise OutputError(f"not enough space in {folder} for {os.path.basename(path)} "
                                  f"(needs ~{_gb(size)}, {_gb(free)} free)",
                                  "free some space or choose another output folder")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's live process, or we cannot tell: leave its file alone
    return True


def stale_partials(folder: str) -> list[str]:
    """Paths of `.*.PID.*.partial` temp files in `folder` whose writing process is gone."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    out = []
    for name in names:
        m = _PARTIAL.match(name)
        if m and not _pid_alive(int(m.group(1))):
            out.append(os.path.join(folder, name))
    return sorted(out)


def clean_partials(folder: str) -> list[tuple[str, int]]:
    """Remove stale partials from `folder`; [(path, bytes)] of those removed, each logged."""
    removed = []
    for p in stale_partials(folder):
        try:
            size = os.path.getsize(p)
            os.unlink(p)
        except OSError:
            continue
        log.warning("removed %s (%s), left by an interrupted run", p, _gb(size))
        removed.append((p, size))
    return removed


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def _no_space(path: str, folder: str, size: int | None) -> OutputError:
    free = "?"
    with contextlib.suppress(OSError):
        free = _gb(shutil.disk_usage(folder).free)
    need = f"needs ~{_gb(size)}, " if size else ""
    return OutputError(f"no space left on the device of {folder} writing {os.path.basename(path)} ({need}{free} free)",
                       "free some space or choose another output folder; nothing was written")


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block (POSIX); a signal that came meanwhile acts right after."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None:  # Windows: no signal masks
        yield
        return
    old = mask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def atomic_write(path: str, overwrite: bool = False, *, inputs: Iterable[str] = (),
                 size: int | None = None) -> Iterator[BinaryIO]:
    """Yield a temp file beside `path`; on success it becomes `path`, on any error it vanishes.
    `inputs`: files the job reads (never replaced); `size`: expected bytes (checked against free space)."""
    inputs = list(inputs)
    check_output(path, overwrite, inputs, size)
    folder, name = os.path.split(os.path.abspath(path))
    clean_partials(folder)
    tmp = None
    try:
        # Ctrl-C / SIGTERM held until the temp file's name is ours: one landing inside mkstemp, after
        # the file is made and before its name is returned, would leave it behind
        with _signals_held():
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{name[:60]}.{os.getpid()}.", suffix=".partial", dir=folder)
            except OSError as e:
                if e.errno in _NO_SPACE:
                    raise _no_space(path, folder, size) from None
                raise OutputError(f"cannot write in output folder {folder} ({e.strerror or e})",
                                  "choose a folder you can write to") from None
        with contextlib.suppress(OSError):  # mkstemp makes 0600; an output is a file like any other
            os.fchmod(fd, 0o666 & ~_umask())
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            if e.errno in _NO_SPACE:
                raise _no_space(path, folder, size) from None
            raise
        check_output(path, overwrite, inputs)  # an input could have been moved here meanwhile
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
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    else:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
