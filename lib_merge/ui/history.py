"""The merge history: one JSON line per merge in `<folder>/history.jsonl`.

An entry holds every setting of the form (so it loads back as it was typed), the recipe as the
engine recorded it, the inputs' hashes and the output. Appending one line is atomic enough for a
file only this process writes; a damaged line is skipped, never fatal.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from typing import Any, Mapping

from ..errors import MergeError
from ..merge.provenance import json_or_text
from .form import FormValues

log = logging.getLogger("lib_merge")
FILE_NAME = "history.jsonl"


class History:
    def __init__(self, folder: str):
        self.folder = folder
        self.path = os.path.join(folder, FILE_NAME)
        self._lock = threading.Lock()

    def add(self, action: str, form: FormValues, metadata: Mapping[str, str] | None,
            output: str | None = None, seconds: float | None = None) -> dict[str, Any]:
        """Record a finished merge. `metadata` is the result's (sd_merge_recipe, sd_merge_models)."""
        now = time.time()
        recipe = json_or_text(metadata.get("sd_merge_recipe")) if metadata else None
        models = json_or_text(metadata.get("sd_merge_models")) if metadata else None
        entry = {
            "id": time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + "-" + secrets.token_hex(3),
            "time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)),
            "action": action,
            "settings": form.to_dict(),
            "recipe": recipe,
            "model_hashes": (recipe or {}).get("model_hashes", []) if isinstance(recipe, dict) else [],
            # names and legacy hashes only; each input's own recipe is in the output file
            "models": {h: {k: v for k, v in m.items() if k != "sd_merge_recipe"}
                       for h, m in (models or {}).items() if isinstance(m, dict)},
            "output": output,
            "seconds": None if seconds is None else round(seconds, 2),
        }
        line = json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n"
        with self._lock:
            try:
                os.makedirs(self.folder, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(line)
            except OSError as e:
                raise MergeError(f"the merge worked but the history file {self.path} cannot be written "
                                 f"({e.strerror})", "check the folder's permissions") from None
        return entry

    def entries(self, limit: int = 200) -> list[dict[str, Any]]:
        """Newest first."""
        try:
            with open(self.path, encoding="utf-8") as f:
                lines = f.readlines()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as e:
            log.warning("cannot read merge history %s: %s", self.path, e)
            return []
        out: list[dict[str, Any]] = []
        for n, ln in enumerate(reversed(lines)):
            if len(out) >= limit:
                break
            try:
                e = json.loads(ln)
            except ValueError:
                log.warning("merge history %s: line %d is damaged, skipped", self.path, len(lines) - n)
                continue
            if isinstance(e, dict) and "id" in e:
                out.append(e)
        return out

    def get(self, entry_id: str) -> dict[str, Any]:
        for e in self.entries(limit=10 ** 9):
            if e["id"] == entry_id:
                return e
        raise MergeError(f"merge {entry_id!r} is not in the history", "pick one from the list (refresh it first)")


def entry_label(e: Mapping[str, Any]) -> str:
    """`<id> · save · A + B · weight_sum → out.safetensors`; the id comes first (see entry_id)."""
    s = e.get("settings") or {}
    models = " + ".join(os.path.basename(str(m)) for m in (s.get("model_a"), s.get("model_b"), s.get("model_c")) if m)
    recipe = e.get("recipe") if isinstance(e.get("recipe"), dict) else {}
    method = recipe.get("method") or (s.get("calc") if s.get("calc") not in (None, "normal") else s.get("mode"))
    out = f" → {os.path.basename(e['output'])}" if e.get("output") else ""
    return f"{e['id']} · {e.get('action', '?')} · {models or '?'} · {method or '?'}{out}"


def entry_id(label: str | None) -> str:
    """The id a label starts with (dropdown values are labels: gradio 3 has no (label, value) pairs)."""
    if not label:
        raise MergeError("no past merge is picked", "pick one from the list of past merges")
    return label.split(" ", 1)[0]


