"""The webui's own sha256 cache, shared with ours (issue 12): a file either program hashed is not
hashed again by the other.

The webui keeps a checkpoint's sha256 under the title "checkpoint/NAME" (NAME: `CheckpointInfo.name`,
the path below the models folder) in the "hashes" section of its cache, as {"mtime": getmtime(file),
"sha256": hex}; an entry whose mtime is older than the file's is stale (AUTOMATIC1111 modules/hashes.py
`sha256_from_cache` / `sha256`, e.g. commit 6ee4012c). Where that cache lives depends on the version:
cache.json (A1111 before 1.9, modules/cache.py bb7dd7b6), a diskcache folder cache/hashes/ (A1111
1.9+ and Forge, modules/cache.py e26abf87 in Forge). So it is reached through the webui's own
functions, never by reading the files: `modules.hashes.sha256_from_cache` to look up,
`modules.hashes.cache("hashes")[title] = ...` plus `dump_cache()` to store, as `sha256()` does.
Forge 2.0.0 wrote sha256(file name) there instead of the file's hash; io.hashing ignores such values.
"""
from __future__ import annotations

import os


class WebuiHashes:
    """io.hashing.SharedHashes over the running webui's cache; files that are not listed
    checkpoints are left alone (their title is unknown)."""

    def _title(self, path: str) -> str | None:
        from modules import sd_models
        full = os.path.abspath(path)
        for info in list(sd_models.checkpoints_list.values()):
            if os.path.abspath(info.filename) == full:
                return f"checkpoint/{info.name}"
        return None

    def lookup(self, path: str, mtime: float) -> str | None:
        title = self._title(path)
        if title is None:
            return None
        from modules import hashes
        return hashes.sha256_from_cache(path, title)

    def store(self, path: str, mtime: float, digest: str) -> None:
        title = self._title(path)
        if title is None:
            return
        from modules import hashes
        hashes.cache("hashes")[title] = {"mtime": mtime, "sha256": digest}
        hashes.dump_cache()
