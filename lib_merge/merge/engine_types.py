"""Small types shared by the engine and its pipeline: progress callbacks and cancellation."""
from __future__ import annotations

import threading
from typing import Callable

Progress = Callable[[int, int, str], None]  # (done, total, what)


class CancelToken:
    """Thread-safe flag a UI sets to stop a merge; the merge raises Cancelled and writes nothing."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()
