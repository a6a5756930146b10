"""What one merge tab owns: its data folder (history, user presets), hash cache and cancel token.

No module-level state: the webui adapter or the standalone server makes one TabState per tab.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

from ..merge.engine import CancelToken
from ..errors import MergeError
from ..io.hashing import HashCache
from ..merge.presets import PresetBook
from .history import History

PRESETS_FILE = "mbw_presets.txt"


def default_data_dir() -> str:
    """$BLOCKMERGE_DATA_DIR, else $XDG_DATA_HOME/blockmerge, else ~/.local/share/blockmerge."""
    return os.environ.get("BLOCKMERGE_DATA_DIR") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share"), "blockmerge")


class TabState:
    def __init__(self, data_dir: str | None = None, presets_file: str | None = None,
                 hash_cache: HashCache | None = None):
        self.data_dir = data_dir or default_data_dir()
        self.presets_file = presets_file or os.path.join(self.data_dir, PRESETS_FILE)
        self.hash_cache = hash_cache or HashCache()
        self.history = History(self.data_dir)
        self._lock = threading.Lock()
        self._token: CancelToken | None = None

    def presets(self) -> PresetBook:
        """Built-in presets plus the user's file, read afresh (it may have been edited by hand)."""
        return PresetBook.from_file(self.presets_file if os.path.isfile(self.presets_file) else None)

    @contextlib.contextmanager
    def running(self) -> Iterator[CancelToken]:
        """One merge at a time per tab; the token is what Stop sets."""
        if not self._lock.acquire(blocking=False):
            raise MergeError("a merge is already running in this tab", "wait for it to finish or press Stop")
        token = CancelToken()
        self._token = token
        try:
            yield token
        finally:
            self._token = None
            self._lock.release()

    @property
    def busy(self) -> bool:
        return self._token is not None

    def stop(self) -> bool:
        """Ask the running merge to stop; False when nothing runs."""
        token = self._token
        if token is None:
            return False
        token.cancel()
        return True
