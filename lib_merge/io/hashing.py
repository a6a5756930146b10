"""Model hashes as the webui computes them, with a cache so a large file is hashed once."""
from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import Callable

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


class HashCache:
    """{absolute path: (size, mtime, sha256)} persisted as JSON. Owned by its caller, thread-safe."""

    def __init__(self, path: str | None = None):
        self.path = path or default_cache_path()
        self._lock = threading.Lock()
        try:
            with open(self.path, encoding="utf-8") as f:
                self._data: dict = json.load(f)
        except (OSError, ValueError):
            self._data = {}

    def sha256(self, path: str, progress: Callable[[int, int], None] | None = None) -> str:
        full = os.path.abspath(path)
        st = os.stat(full)
        with self._lock:
            hit = self._data.get(full)
        if hit and hit.get("size") == st.st_size and hit.get("mtime") == st.st_mtime:
            return hit["sha256"]
        digest = sha256_file(full, progress)
        with self._lock:
            self._data[full] = {"size": st.st_size, "mtime": st.st_mtime, "sha256": digest}
            self._save()
        return digest

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
        self._lock = threading.Lock()
        self._data = {}

    def _save(self) -> None:
        pass
