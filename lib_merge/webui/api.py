"""BlockMerge's REST API on the webui's FastAPI app (`on_app_started`), under /blockmerge/v1.

The routes are plain functions of a JSON body (tested without FastAPI); `register(app)` mounts
them. A user mistake (`MergeError`) is HTTP 400 with `{"error": one line in the API's words, "fields": [...]}`. Merges hold
`modules.call_queue.queue_lock`, the lock `/sdapi/v1/txt2img` holds, so they never run beside a
generation. Like any route added through `on_app_started`, these are not behind `--api-auth`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Mapping

from ..arch.blocks import SD1, SDXL
from ..merge.engine import merge
from ..errors import MergeError, OutputError, RecipeError
from ..wording import Surface, fields_named, for_surface
from ..io.hashing import HashCache, legacy_hash
from ..lora.entries import format_entries
from ..lora.elemental import format_rules
from ..lora.presets import PresetBook
from ..merge.presets import PresetBook as MergePresetBook
from ..merge.provenance import model_name
from ..merge.recipe import Recipe
from .lbw_files import PresetFiles, check_tag

PREFIX = "/blockmerge/v1"
_SAFE_NAME = re.compile(r"^[^\\/\x00]+$")


@dataclass
class Deps:
    """What the routes need from the webui; `webui_deps()` gives the real ones, tests their own."""
    lock: Callable[[], ContextManager]
    resolve_model: Callable[[str], str]  # picker name / title / hash -> file path
    output_dir: Callable[[], str]
    merge_presets_file: Callable[[], str]
    lora_files: PresetFiles
    refresh: Callable[[], None]
    live_arch: Callable[[], str | None]
    hash_cache: HashCache | None = None


def webui_deps() -> Deps:
    from . import checkpoints, settings
    from .hash_share import WebuiHashes

    def lock() -> ContextManager:
        from modules.call_queue import queue_lock
        return queue_lock

    def live_arch() -> str | None:
        from modules import sd_models
        model = getattr(sd_models.model_data, "sd_model", None)  # never loads a model
        arch = checkpoints.arch_of_model(model) if hasattr(model, "sd_checkpoint_info") else None
        return arch.id if arch else None

    return Deps(lock, lambda n: checkpoints.resolve(n).filename, checkpoints.models_dir,
                lambda: os.path.join(settings.data_dir(), "mbw_presets.txt"),
                PresetFiles(settings.lbw_presets_path, settings.lbwe_presets_path),
                checkpoints.refresh, live_arch, HashCache(shared=WebuiHashes()))


# ---- routes as plain functions ------------------------------------------------------------------
def merge_route(body: Mapping[str, Any], deps: Deps) -> dict[str, Any]:
    """{"recipe": {...Recipe fields...}, "output": "name.safetensors", "overwrite": false}; the recipe's
    fields may also sit at the top level. Models are webui checkpoint names, titles or hashes."""
    if not isinstance(body, Mapping):
        raise RecipeError("the request body is not a JSON object", 'send {"recipe": {"models": ["A", "B"], ...}}')
    raw = dict(body.get("recipe", body))
    for k in ("output", "overwrite"):
        raw.pop(k, None)
    models = raw.get("models")
    if not isinstance(models, (list, tuple)) or not models:
        raise RecipeError("the recipe has no models", 'give "models": ["model A", "model B"] as the webui lists them')
    raw["models"] = [deps.resolve_model(str(m)) for m in models]
    if raw.get("key_map"):  # a map file name, looked up next to model A, then in the checkpoint folder
        from ..merge.keymap import find_map
        raw["key_map"] = find_map(str(raw["key_map"]), _folders(raw["models"][0], deps.output_dir()))
    unknown = set(raw) - set(Recipe.__dataclass_fields__)
    if unknown:
        raise RecipeError(f"unknown recipe field(s): {', '.join(sorted(unknown))}",
                          f"use {', '.join(sorted(Recipe.__dataclass_fields__))}")
    try:
        recipe = Recipe.from_dict(raw)
    except TypeError as e:
        raise RecipeError(f"the recipe does not fit ({e})", "check the field names and types") from None
    path = _output_path(body.get("output"), recipe, deps.output_dir())
    presets_file = deps.merge_presets_file()
    book = MergePresetBook.from_file(presets_file if os.path.isfile(presets_file) else None)
    cache = deps.hash_cache or HashCache()
    with deps.lock():
        result = merge(recipe, path, overwrite=bool(body.get("overwrite", False)), hash_cache=cache, presets=book,
                       hash_output=True)
        deps.refresh()
    out = result.output or path
    # the output's sha256 from the bytes as written; a second pass over the file only when the merge
    # could not (an input's digest came from the merge's own reads, so the header was rewritten last)
    digest = result.sha256 or cache.sha256(out)
    if result.sha256:
        # stored once the webui lists the new checkpoint: the webui's own cache takes it under its title
        # only then (and ours with it), so loading the merged model will not hash the whole file
        cache.store(out, result.sha256, os.stat(out))
    return {"output": out, "name": model_name(out), "sha256": digest, "legacy_hash": legacy_hash(out),
            "model_hashes": result.hashes, "architecture": result.plan.arch.id,
            "seconds": round(result.seconds, 3), "notes": list(result.plan.notes)}


def _folders(*places: str) -> list[str]:
    out: list[str] = []
    for p in places:
        d = p if os.path.isdir(p) else os.path.dirname(os.path.abspath(p))
        if d not in out:
            out.append(d)
    return out


def compare_route(body: Mapping[str, Any], deps: Deps) -> dict[str, Any]:
    """{"models": ["A", "B"(, "C")], "heatmap": true}: the comparison's JSON (`python -m lib_merge compare
    --json`), with the heatmap as a base64 PNG in "heatmap_png" unless "heatmap" is false."""
    if not isinstance(body, Mapping):
        raise _about(RecipeError("the request body is not a JSON object", 'send {"models": ["A", "B"]}'), "models")
    models = body.get("models")
    if not isinstance(models, (list, tuple)) or not 2 <= len(models) <= 3:
        raise _about(RecipeError('"models" needs 2 or 3 checkpoints', 'send "models": ["model A", "model B"] as the '
                                 "webui lists them"), "models")
    unknown = set(body) - {"models", "heatmap", "key_map"}
    if unknown:
        raise _about(RecipeError(f"unknown field(s): {', '.join(sorted(unknown))}",
                                 'use "models", "heatmap" and "key_map"'), *sorted(unknown))
    heatmap = body.get("heatmap", True)
    if not isinstance(heatmap, bool):
        raise _about(RecipeError('"heatmap" is not true or false', 'send "heatmap": true or false'), "heatmap")
    from ..merge.compare import compare
    from ..merge.keymap import KeyMapError, find_map
    try:
        paths = [deps.resolve_model(str(m)) for m in models]
    except MergeError as e:
        raise _about(e, "models") from None
    try:
        # a pruned SDXL A (SSD-1B, Vega): B and C read through the map, found as the merge route finds it
        key_map = find_map(str(body["key_map"]), _folders(paths[0], deps.output_dir())) if body.get("key_map") else None
        result = compare(paths, key_map=key_map)
    except KeyMapError as e:
        raise _about(e, "key_map") from None
    except MergeError as e:
        raise _about(e, "models") from None
    out = result.to_json()
    out["notes"] = [for_surface(n, Surface.REST) for n in out.get("notes", [])]  # "--key-map" as the field name
    if heatmap:
        import base64
        import io
        from ..xy.heatmap import draw_heatmap
        buf = io.BytesIO()
        draw_heatmap(result).image.save(buf, format="PNG")
        out["heatmap_png"] = base64.b64encode(buf.getvalue()).decode("ascii")
    return out


def _about(err: MergeError, *fields: str) -> MergeError:
    """The error, marked with the request fields it is about (for `error_body`)."""
    err.fields = list(fields)  # type: ignore[attr-defined]
    return err


def _output_path(name: Any, recipe: Recipe, folder: str) -> str:
    if name is None or name == "":
        from ..ui.form import default_name
        name = default_name(recipe)
    name = str(name)
    if not _SAFE_NAME.match(name) or name.strip(".") == "":
        raise OutputError(f"output {name!r} is not a plain file name",
                          "give a name such as my_merge.safetensors; it is saved in the webui's checkpoint folder")
    if not name.lower().endswith(".safetensors"):
        name += ".safetensors"
    return os.path.join(folder, name)


def presets_route(deps: Deps) -> dict[str, Any]:
    """Checkpoint-merge presets (26 values, and 20 for SDXL) and LoRA presets (17 for SD1, 12 for SDXL)."""
    presets_file = deps.merge_presets_file()
    book = MergePresetBook.from_file(presets_file if os.path.isfile(presets_file) else None)
    merge_presets = {"sd": {}, "sdxl": {}}
    for name in book.names():
        for fam, arch in (("sd", SD1), ("sdxl", SDXL)):
            tokens = book.lookup(name, arch.blocks)
            if tokens is not None:
                merge_presets[fam][name] = ",".join(tokens)
    lora: PresetBook = deps.lora_files.book()
    lora_presets: dict[str, dict[str, str]] = {}
    for name in lora.names():
        for fam, arch in (("sd", SD1), ("sdxl", SDXL)):
            try:
                lora_presets.setdefault(name, {})[fam] = format_entries(lora.lbw_entries(name, arch, name))
            except MergeError:
                pass
    elemental = {name: format_rules(rules) for name, rules in lora.lbwe.items()}
    return {"merge": merge_presets, "lora": lora_presets, "lora_elemental": elemental}


def parse_tag_route(body: Mapping[str, Any], deps: Deps) -> dict[str, Any]:
    """{"tag": "<lora:name:1:1:lbw=OUTD>", "arch": "sd1" | "sd2" | "sdxl" (default: the loaded model's)}."""
    if not isinstance(body, Mapping) or not isinstance(body.get("tag"), str):
        raise RecipeError('the body needs "tag"', 'send {"tag": "<lora:NAME:1:1:lbw=ALL>", "arch": "sdxl"}')
    arch = body.get("arch") or deps.live_arch() or "sd1"
    return check_tag(body["tag"], str(arch), deps.lora_files.book())


# ---- FastAPI wiring ----------------------------------------------------------------------------
def error_body(err: MergeError) -> dict[str, Any]:
    """A user mistake as the API says it: the one-line message in the request's own words (JSON
    field names, the presets endpoint), and the fields it is about."""
    text = str(err)
    return {"error": for_surface(text, Surface.REST), "fields": getattr(err, "fields", None) or fields_named(text)}


def register(app: Any, deps: Deps | None = None) -> None:
    from fastapi import Body
    from fastapi.responses import JSONResponse

    d = deps or webui_deps()

    def run(fn: Callable[[], dict]) -> Any:
        try:
            return fn()
        except MergeError as e:
            return JSONResponse(status_code=400, content=error_body(e))

    def merge_endpoint(body: dict = Body(...)) -> Any:
        return run(lambda: merge_route(body, d))

    def compare_endpoint(body: dict = Body(...)) -> Any:
        return run(lambda: compare_route(body, d))

    def presets_endpoint() -> Any:
        return run(lambda: presets_route(d))

    def parse_tag_endpoint(body: dict = Body(...)) -> Any:
        return run(lambda: parse_tag_route(body, d))

    app.add_api_route(f"{PREFIX}/merge", merge_endpoint, methods=["POST"])
    app.add_api_route(f"{PREFIX}/compare", compare_endpoint, methods=["POST"])
    app.add_api_route(f"{PREFIX}/presets", presets_endpoint, methods=["GET"])
    app.add_api_route(f"{PREFIX}/parse-tag", parse_tag_endpoint, methods=["POST"])


def on_app_started(demo: Any, app: Any) -> None:
    """The on_app_started callback."""
    register(app)
