"""The metadata the webui reads from a merged file: `sd_merge_recipe` and `sd_merge_models`."""
from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping

from .. import __version__
from ..io.hashing import HashCache, legacy_hash

TOOL = "blockmerge"


def model_name(path: str) -> str:
    """The name the webui shows: the file name without its extension."""
    return os.path.splitext(os.path.basename(path))[0]


def models_metadata(paths: Iterable[str], cache: HashCache, metadata_of: Mapping[str, Mapping[str, str]] | None = None
                    ) -> tuple[dict[str, Any], list[str]]:
    """(sd_merge_models dict, [sha256 per path]). Inputs that are merges themselves bring their own
    sd_merge_models along, as the webui's merger does, so the whole family tree stays in the file."""
    models: dict[str, Any] = {}
    hashes: list[str] = []
    for path in paths:
        digest = cache.sha256(path)
        hashes.append(digest)
        meta = (metadata_of or {}).get(path, {})
        try:
            models.update(json.loads(meta.get("sd_merge_models", "{}")))
        except ValueError:
            pass
        recipe = meta.get("sd_merge_recipe")
        models[digest] = {"name": model_name(path), "legacy_hash": legacy_hash(path),
                          "sd_merge_recipe": json_or_text(recipe)}
    return models, hashes


def json_or_text(text: str | None) -> Any:
    """Parsed JSON, the text itself if it is not JSON, or None for nothing."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def file_metadata(kind: str, recipe: Mapping[str, Any], models: Mapping[str, Any], extra: Mapping[str, str] | None = None
                  ) -> dict[str, str]:
    """The safetensors `__metadata__` of a file we write. `kind` is "merge", "lora_bake", ..."""
    body = {"type": TOOL, "kind": kind, "version": __version__, **recipe}
    meta = {
        "sd_merge_recipe": json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False),
        "sd_merge_models": json.dumps(models, sort_keys=True, separators=(",", ":")),
        "format": "pt",
    }
    if extra:
        meta.update(extra)
    return meta
