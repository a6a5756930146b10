"""What every command line of the package shares (the top-level CLI and `lora`'s sub-commands)."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator


@contextlib.contextmanager
def tqdm_progress(quiet: bool) -> Iterator[Callable[[int, int, str], None] | None]:
    """A progress callback drawing tqdm bars, one per phase; None when quiet."""
    if quiet:
        yield None
        return
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def cb(done: int, total: int, what: str) -> None:
        bar = bars.get(what)
        if bar is None:
            for b in bars.values():
                b.close()
            in_bytes = what == "merging" or what.startswith("hashing")  # both count bytes: same units
            unit = dict(unit="B", unit_scale=True, unit_divisor=1024) if in_bytes else {}
            bar = bars[what] = tqdm(total=total, desc=what, leave=False, **unit)
        bar.update(done - bar.n)

    try:
        yield cb
    finally:
        for b in bars.values():
            b.close()
