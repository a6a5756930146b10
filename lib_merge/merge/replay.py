"""Rebuild a merged file from the recipe in its own metadata, finding the inputs by hash."""
from __future__ import annotations

import json
import os

from .engine import Progress, merge, MergeResult
from ..errors import ModelFileError, RecipeError
from ..io.hashing import HashCache
from ..io.models import PICKLE_EXT, SAFETENSORS_EXT, read_shapes
from .provenance import TOOL
from .recipe import Recipe

MODEL_EXT = SAFETENSORS_EXT + PICKLE_EXT


def recorded_recipe(path: str) -> dict:
    _, meta = read_shapes(path)
    text = meta.get("sd_merge_recipe")
    if not text:
        raise RecipeError(f"{os.path.basename(path)} carries no merge recipe", "replay only files this tool merged")
    try:
        rec = json.loads(text)
    except ValueError:
        raise RecipeError(f"{os.path.basename(path)} has an unreadable recipe", "the metadata is damaged") from None
    if not isinstance(rec, dict) or rec.get("type") != TOOL or rec.get("kind") != "merge":
        raise RecipeError(f"{os.path.basename(path)} was not merged by blockmerge (its recipe is another tool's)",
                          "replay only files this tool merged")
    return rec


def find_model(name: str, sha256: str, folders: list[str], cache: HashCache) -> str:
    """The file named `name` in one of `folders` if its hash matches, else any model file with that hash."""
    for folder in folders:
        cand = os.path.join(folder, name)
        if os.path.isfile(cand) and cache.sha256(cand) == sha256:
            return cand
    for folder in folders:
        for root, _, files in os.walk(folder):
            for f in sorted(files):
                if f.lower().endswith(MODEL_EXT):
                    cand = os.path.join(root, f)
                    if cache.sha256(cand) == sha256:
                        return cand
    raise ModelFileError(f"input model {name} (sha256 {sha256[:10]}) not found in {', '.join(folders)}",
                         "pass --models-dir with the folder that holds it")


def replay(merged: str, output: str, *, models_dir: str | None = None, overwrite: bool = False,
           progress: Progress | None = None, hash_cache: HashCache | None = None,
           key_map: str | None = None) -> MergeResult:
    rec = recorded_recipe(merged)
    cache = hash_cache or HashCache()
    folders = [d for d in (models_dir, os.path.dirname(os.path.abspath(merged))) if d]
    hashes = rec.get("model_hashes") or []
    names = rec.get("models") or []
    if len(hashes) < len(names):
        raise RecipeError(f"{os.path.basename(merged)}'s recipe has no hashes for its models", "it cannot be replayed")
    paths = tuple(find_model(n, h, folders, cache) for n, h in zip(names, hashes))
    if key_map and not rec.get("key_map"):
        raise RecipeError(f"--key-map was given but {os.path.basename(merged)} was not merged through a key map",
                          "drop --key-map")
    name = str(rec["key_map"]) if rec.get("key_map") else None
    if rec.get("key_map"):  # the same map as the merge: by name next to the models, else by its hash
        from .keymap import find_recorded
        near = [d for d in (*folders, os.path.dirname(os.path.abspath(paths[0]))) if d]
        rec["key_map"] = find_recorded(str(rec["key_map"]), str(rec.get("key_map_sha256") or ""),
                                       list(dict.fromkeys(near)), key_map)
    recipe = Recipe.from_dict({**rec, "models": paths})
    return merge(recipe, output, overwrite=overwrite, progress=progress, hash_cache=cache, key_map_name=name)
