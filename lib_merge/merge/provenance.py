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
    paths = list(paths)
    hashes = [cache.sha256(p) for p in paths]
    return models_for(paths, hashes, metadata_of), hashes


def models_for(paths: list[str], hashes: list[str], metadata_of: Mapping[str, Mapping[str, str]] | None = None
               ) -> dict[str, Any]:
    """sd_merge_models for inputs whose sha256 are `hashes` (see `models_metadata`)."""
    models: dict[str, Any] = {}
    for path, digest in zip(paths, hashes):
        models.update(inherited(path, metadata_of))
        recipe = (metadata_of or {}).get(path, {}).get("sd_merge_recipe")
        models[digest] = {"name": model_name(path), "legacy_hash": legacy_hash(path),
                          "sd_merge_recipe": json_or_text(recipe)}
    return models


def inherited(path: str, metadata_of: Mapping[str, Mapping[str, str]] | None) -> dict[str, Any]:
    """The sd_merge_models an input that is itself a merge brings along."""
    try:
        got = json.loads((metadata_of or {}).get(path, {}).get("sd_merge_models", "{}"))
    except ValueError:
        return {}
    return got if isinstance(got, dict) else {}


def placeholders(n: int) -> list[str]:
    """Stand-ins for n sha256 digests not known yet: distinct, 64 characters, JSON-plain like a digest.

    Metadata made with the real digests is never longer than with these: every entry of the real
    sd_merge_models is also in the placeholder one (our entry for input i sits under placeholder i;
    an inherited entry that survives in the real one is the last one written for its key there too),
    keys are 64 characters either way, and the real one can only have fewer entries (an inherited
    entry or a repeated input under the same digest collapses). So a header written with
    placeholders leaves room for the real one, padded with spaces."""
    return [f"{i + 1:064x}" for i in range(n)]


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
