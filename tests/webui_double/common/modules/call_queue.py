"""modules/call_queue.py: `queue_lock` is a FIFO lock in both webuis; not re-entrant."""
import threading


class _Lock:
    def __init__(self):
        self._lock = threading.Lock()
        self.acquired = 0  # how often it was taken (tests read it)

    def __enter__(self):
        if not self._lock.acquire(timeout=5):
            raise RuntimeError("queue_lock is already held: the real FIFOLock would deadlock here")
        self.acquired += 1
        return self

    def __exit__(self, *exc):
        self._lock.release()

    def locked(self):
        return self._lock.locked()


queue_lock = _Lock()
