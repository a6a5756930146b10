"""Model hashes as the webui computes them, with a cache so a large file is hashed once.

A merge does not hash its inputs in a pass of their own: `StreamHasher` computes each input's sha256
from the very reads that feed the merge (io/safetensors_io.py calls `feed` after every positioned
read) and reads by itself only the bytes the merge never needs (the header, keys it skips).
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import Callable, Protocol

CHUNK = 1 << 20


def sha256_file(path: str, progress: Callable[[int, int], None] | None = None) -> str:
    """sha256 of the whole file (the webui's "full hash")."""
    h = hashlib.sha256()
    total, done = os.path.getsize(path), 0
    buf = bytearray(16 * CHUNK)
    mv = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(mv)
            if not n:
                break
            h.update(mv[:n])
            done += n
            if progress:
                progress(done, total)
    return h.hexdigest()


def legacy_hash(path: str) -> str:
    """The webui's old short hash: sha256 of 64 KiB at offset 1 MiB, first 8 hex digits."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(0x100000)
        h.update(f.read(0x10000))
    return h.hexdigest()[:8]


def default_cache_path() -> str:
    root = os.environ.get("BLOCKMERGE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "blockmerge")
    return os.path.join(root, "hashes.json")


class SharedHashes(Protocol):
    """Another program's hash cache (the webui's, see webui/hash_share.py): asked on a miss, told
    every digest we compute."""

    def lookup(self, path: str, mtime: float) -> str | None: ...

    def store(self, path: str, mtime: float, digest: str) -> None: ...


def is_fake_forge_hash(path: str, digest: str) -> bool:
    """Forge 2.0.0 stored sha256(file name) as a checkpoint's "sha256" (lllyasviel/
    stable-diffusion-webui-forge modules/hashes.py, cfa5242a, undone in ed0dc79a): such a value
    says nothing about the file's bytes and must never reach a recipe."""
    return digest == hashlib.sha256(os.path.basename(path).encode("utf-8")).hexdigest()


class HashCache:
    """{absolute path: (size, mtime, sha256)} persisted as JSON. Owned by its caller, thread-safe.
    `shared`: the webui's own cache, consulted on a miss and fed every new digest."""

    def __init__(self, path: str | None = None, shared: SharedHashes | None = None):
        self.path = path or default_cache_path()
        self.shared = shared
        self._lock = threading.Lock()
        try:
            with open(self.path, encoding="utf-8") as f:
                self._data: dict = json.load(f)
        except (OSError, ValueError):
            self._data = {}

    def lookup(self, path: str) -> str | None:
        """The cached sha256 of `path` if the file is unchanged (same size and mtime), else None."""
        full = os.path.abspath(path)
        st = os.stat(full)
        with self._lock:
            hit = self._data.get(full)
        if hit and hit.get("size") == st.st_size and hit.get("mtime") == st.st_mtime:
            return hit["sha256"]
        if self.shared is not None:
            try:
                digest = self.shared.lookup(full, st.st_mtime)
            except Exception:  # noqa: BLE001 -- another program's cache: a miss, never a failure
                digest = None
            if isinstance(digest, str) and len(digest) == 64 and not is_fake_forge_hash(full, digest):
                self._put(full, st, digest, share=False)
                return digest.lower()
        return None

    def store(self, path: str, digest: str, st: os.stat_result) -> None:
        """Remember a digest computed elsewhere (a merge's own reads) for the file as `st` saw it."""
        self._put(os.path.abspath(path), st, digest, share=True)

    def sha256(self, path: str, progress: Callable[[int, int], None] | None = None) -> str:
        digest = self.lookup(path)
        if digest is not None:
            return digest
        full = os.path.abspath(path)
        st = os.stat(full)
        digest = sha256_file(full, progress)
        if _same_file(st, full):
            self._put(full, st, digest, share=True)
        return digest

    def _put(self, full: str, st: os.stat_result, digest: str, share: bool) -> None:
        with self._lock:
            self._data[full] = {"size": st.st_size, "mtime": st.st_mtime, "sha256": digest}
            self._save()
        if share and self.shared is not None:
            try:
                self.shared.store(full, st.st_mtime, digest)
            except Exception:  # noqa: BLE001 -- the webui's cache is a courtesy, not our state
                pass

    def _save(self) -> None:
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self._data, f, indent=0, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache that cannot be written only costs time


class NoCache(HashCache):
    """Hash every time (tests; read-only environments)."""

    def __init__(self) -> None:
        self.path = ""
        self.shared = None
        self._lock = threading.Lock()
        self._data = {}

    def lookup(self, path: str) -> str | None:
        return None

    def _save(self) -> None:
        pass


def _same_file(st: os.stat_result, path: str) -> bool:
    """The file still has the size and mtime it had when hashing began (else the digest is not cached)."""
    try:
        now = os.stat(path)
    except OSError:
        return False
    return now.st_size == st.st_size and now.st_mtime == st.st_mtime


class StreamHasher:
    """sha256 of one file, computed from reads done for another purpose.

    `feed(offset, data)` after each read: bytes that continue the hashed prefix extend it; a read
    past the prefix first has the gap read here (header, skipped keys); a read already behind it
    (a second pass over a key) is ignored. `finish()` reads what was never read and returns the
    digest. So every byte is hashed exactly once, in file order, and read from disk once unless the
    merge reads the file out of order. `gap_bytes` counts what this class read itself."""

    GAP_BUF = 8 << 20

    def __init__(self, path: str):
        self.path = path
        self.st = os.stat(path)
        self.size = self.st.st_size
        self.pos = 0
        self.fed_bytes = 0
        self.gap_bytes = 0
        self._h = hashlib.sha256()
        self._buf: bytearray | None = None

    def feed(self, offset: int, data: memoryview) -> None:
        end = offset + len(data)
        if end <= self.pos:
            return
        if offset > self.pos:
            self._fill(offset)
        skip = self.pos - offset
        self._h.update(data[skip:] if skip else data)  # releases the GIL for large buffers
        self.fed_bytes += end - self.pos
        self.pos = end

    def _fill(self, upto: int) -> None:
        if self._buf is None:
            self._buf = bytearray(self.GAP_BUF)
        mv = memoryview(self._buf)
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            while self.pos < upto:
                n = min(len(mv), upto - self.pos)
                if hasattr(os, "preadv"):
                    got = os.preadv(fd, [mv[:n]], self.pos)
                else:
                    os.lseek(fd, self.pos, os.SEEK_SET)
                    got = os.readv(fd, [mv[:n]])
                if not got:
                    raise OSError(f"{os.path.basename(self.path)} shrank while it was read")
                self._h.update(mv[:got])
                self.pos += got
                self.gap_bytes += got
        finally:
            os.close(fd)

    def finish(self) -> str:
        """The digest of the whole file (reads the part not read yet)."""
        if self.pos < self.size:
            self._fill(self.size)
        self._buf = None
        return self._h.hexdigest()

    def unchanged(self) -> bool:
        """The file is as it was when hashing began: the digest may be cached."""
        return _same_file(self.st, self.path)
