"""One exception family for every user-facing mistake.

Messages name the file, key or position that is wrong and end with how to fix it, so the CLI and
the tab can show them as they are, on one line, without a traceback.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class MergeError(Exception):
    """Base class: a problem the user can fix. str(err) is the whole one-line message."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}. Fix: {fix}" if fix else problem)


class ParseError(MergeError):
    """A weight string, preset, elemental line, adjust string or tag that cannot be read."""


class ModelFileError(MergeError):
    """A missing, truncated or unreadable model file."""


class ArchitectureError(MergeError):
    """Models that cannot be merged together, or an architecture we do not support."""


class RecipeError(MergeError):
    """A recipe whose settings do not fit together (a mode that needs C without C, ...)."""


class OutputError(MergeError):
    """The output cannot be written (exists already, bad extension, ...)."""


class Cancelled(MergeError):
    """The caller's cancel token fired; nothing was written."""

    def __init__(self) -> None:
        super().__init__("cancelled by the user; nothing was written")


def suggest(name: str, known: Iterable[str]) -> str:
    """' (did you mean X?)' for the nearest known name, or ''."""
    known = list(known)
    same = [k for k in known if k.lower() == name.lower()]  # `grad_v` for `GRAD_V`: names are case-sensitive
    if same:
        return f" (did you mean {same[0]!r}?)"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
