"""Start writing an output to disk while it is still being produced (Linux's sync_file_range).

A merge must fsync its output before the atomic rename. Left alone, the kernel keeps gigabytes of the
output dirty in the page cache (it starts writing back only past vm.dirty_background_ratio) and the
final fsync then writes all of it while nothing else happens. Asking for asynchronous write-out of
each finished stretch as the merge goes overlaps that disk work with the merge, so the fsync finds
little left, and keeps the dirty memory a merge leaves behind small. Where the call does not exist
(Windows, macOS, a libc without it) this does nothing and the fsync does all the work, as before.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

STEP = 32 << 20  # bytes per write-out request
LAG = 1 << 20  # stay this far behind the position: bytes still in the file object's buffer are not in the kernel yet
SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h: start write-out of dirty pages not already under write-out
SYNC_FILE_RANGE_WAIT = 1 | 2 | 4  # WAIT_BEFORE | WRITE | WAIT_AFTER: the stretch is on disk when it returns


def _libc_call():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_SYNC_FILE_RANGE = _libc_call()


class Writeback:
    """Feed it the file position after each write; every STEP bytes it asks the kernel to start
    writing the finished stretch. Errors (e.g. a filesystem that refuses the call) turn it off:
    the fsync at the end still writes everything."""

    def __init__(self, fd: int | None, start: int = 0):
        self.fd = fd if _SYNC_FILE_RANGE is not None else None
        self.done = start
        # drop behind: each stretch, once on disk, leaves the page cache (see `drop_behind`)
        self.drop = False
        self._written: tuple[int, int] | None = None  # the stretch whose write-out was asked for last

    def drop_behind(self) -> None:
        """Evict each finished stretch from the page cache once it is on disk, one stretch behind
        the write-out: for an output that would otherwise push the inputs out of a full cache."""
        self.drop = hasattr(os, "posix_fadvise")

    def advance(self, pos: int) -> None:
        pos -= LAG
        if self.fd is None or pos - self.done < STEP:
            return
        if _SYNC_FILE_RANGE(self.fd, self.done, pos - self.done, SYNC_FILE_RANGE_WRITE) != 0:
            self.fd = None  # EINVAL/ESPIPE/...: not a regular file on a filesystem that supports it
            return
        if self.drop and self._written is not None:
            # the stretch before this one has had a whole stretch's time to reach the disk: wait for
            # what is left of it, then evict it (DONTNEED drops clean pages only)
            first, end = self._written
            try:
                if _SYNC_FILE_RANGE(self.fd, first, end - first, SYNC_FILE_RANGE_WAIT) == 0:
                    os.posix_fadvise(self.fd, first, end - first, os.POSIX_FADV_DONTNEED)
            except OSError:
                self.drop = False
        self._written = (self.done, pos)
        self.done = pos


def file_descriptor(f) -> int | None:
    """The OS file descriptor behind a binary file object, or None (BytesIO and the like)."""
    try:
        return f.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return None
