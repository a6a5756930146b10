"""Forge Neo: put a merged state dict into the webui through Neo's own loader, without a file, and
take it out again.

What Neo's source shows (Haoming02/sd-webui-forge-classic, branch neo; commit 283cb2c4 of 2025-11-29,
read in a full snapshot of the tree, and backend/loader.py bdf09140 from the code index):
- `modules/sd_models.py` has no `load_model`, `read_state_dict` or `reload_model_weights`; the one
  loader is `forge_model_reload()`: when `str(model_data.forge_loading_parameters)` differs from
  `model_data.forge_hash` it frees the old engine, calls
  `forge_loader(checkpoint_info.filename, additional_state_dicts=...)`, sets `sd_checkpoint_info`,
  `filename`, `sd_model_hash` on the new engine, `model_data.set_sd_model`, fires
  `model_loaded_callback` and stores the hash.
- `backend/loader.py`: `forge_loader(path)` -> `split_state_dict(path)` ->
  `load_torch_file(path, return_metadata=True)`, the name imported into `backend.loader` from
  `backend.utils`. The path is also read for flags (`kontext`, qwen `edit`) and for a `.yaml` next to
  the checkpoint (prediction type).

So the merge goes through Neo's whole loader (architecture guess, text encoders, VAE, the user's
extra VAE/TE modules, quantization) with one substitution: while `forge_model_reload()` runs with
model A's CheckpointInfo, `backend.loader.load_torch_file` answers the call for A's path with the
merged dict (flags and the .yaml still come from A's path) and passes every other path (extra
modules) to Neo's own function; it is put back in `finally`. If Neo's loader never asked for A's
path, the merge was not loaded: the adapter says so (one MergeError) instead of pretending. Afterwards
`forge_hash` is the hash of the user's own loading parameters, so `forge_model_reload()` keeps the
merge until the user picks another checkpoint; `restore()` clears the hash, and the next generation
reloads the selected checkpoint from its file.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator, MutableMapping

import torch

from ..errors import MergeError
from .forge import clear_cond_caches, live_model  # noqa: F401  (the same in Neo: main_entry, forge_model_reload)

log = logging.getLogger("lib_merge")
LABEL_ATTR = "blockmerge_label"


@contextmanager
def serving(loader: Any, path: str, sd: MutableMapping[str, torch.Tensor]) -> Iterator[list]:
    """`loader.load_torch_file` answers the first call for `path` with a copy of `sd` (Neo's loader pops
    keys from what it gets); the returned list records that call. Put back on exit, whatever happens."""
    original = getattr(loader, "load_torch_file", None)
    if original is None:
        raise MergeError("Forge Neo's backend.loader has no load_torch_file, so BlockMerge cannot hand it a merge",
                         "use Merge and save, then pick the saved checkpoint (and report your Neo version)")
    served: list = []

    def load_torch_file(ckpt: Any, *args: Any, **kwargs: Any) -> Any:
        if not served and str(ckpt) == path:
            served.append(str(ckpt))
            out = dict(sd)
            return (out, {}) if kwargs.get("return_metadata") else out
        return original(ckpt, *args, **kwargs)

    loader.load_torch_file = load_torch_file
    try:
        yield served
    finally:
        loader.load_torch_file = original


def load_state_dict(sd: MutableMapping[str, torch.Tensor], base_info: Any, label: str) -> str:
    import backend.loader as loader
    from modules import sd_models
    data = sd_models.model_data
    if not data.forge_loading_parameters:
        from modules_forge import main_entry
        main_entry.refresh_model_loading_parameters()
    params = data.forge_loading_parameters
    selected = params.get("checkpoint_info")
    data.forge_loading_parameters = dict(params, checkpoint_info=base_info)
    data.forge_hash = ""  # always load: even when A is the loaded checkpoint, the merge replaces it
    try:
        with serving(loader, base_info.filename, sd) as served:
            try:
                model, _ = sd_models.forge_model_reload()
            except MergeError:
                raise
            except Exception as e:  # noqa: BLE001 - Neo's loader raises ValueError("Failed to recognize model type!") and others
                data.forge_hash = ""
                raise MergeError(f"Forge Neo could not build a model from the merge ({type(e).__name__}: {e})",
                                 "use Merge and save and load the saved file in Neo; the selected checkpoint "
                                 "is reloaded at the next generation") from e
    finally:
        data.forge_loading_parameters = params
    if not served:
        data.forge_hash = ""  # what was loaded is model A from its file; the next generation reloads the selection
        raise MergeError("Forge Neo's loader did not read the checkpoint through backend.loader.load_torch_file, "
                         "so the merge was not loaded",
                         "use Merge and save and pick the saved file; report your Neo version to BlockMerge")
    if model is None or not hasattr(model, "forge_objects"):
        data.forge_hash = ""
        raise MergeError("Forge Neo did not recognise the merged model's type",
                         "use Merge and save; the selected checkpoint is reloaded at the next generation")
    data.forge_hash = str(params)  # the user's own selection counts as loaded: generating keeps the merge
    setattr(model, LABEL_ATTR, label)
    clear_cond_caches()
    name = getattr(selected, "name", "the selected checkpoint")
    return (f"Loaded into Forge Neo from memory through its own loader (no file written), on {base_info.name}'s "
            f"settings. Restore brings back {name}.")


def restore() -> str:
    from modules import processing, sd_models, shared
    sd_models.model_data.forge_hash = ""  # the next generation reloads the selected checkpoint from its file
    processing.need_global_unload = True
    model = shared.sd_model
    if hasattr(model, LABEL_ATTR):
        delattr(model, LABEL_ATTR)
    clear_cond_caches()
    info = sd_models.model_data.forge_loading_parameters.get("checkpoint_info")
    name = getattr(info, "name", "the selected checkpoint")
    return f"{name} will be reloaded from its file at the next generation."


def loaded_label() -> str | None:
    from modules import shared
    return getattr(shared.sd_model, LABEL_ATTR, None)


@contextmanager
def keep_loaded() -> Iterator[None]:
    """While generating with a merge that is not on disk: Neo's `forge_model_reload`, under both names
    it goes by (`modules.sd_models` and the copy `modules.processing` imports), returns the loaded
    model and "not reloaded", so nothing can swap the merge for the file mid-generation."""
    from modules import processing, sd_models
    if loaded_label() is None:
        yield
        return

    def forge_model_reload() -> tuple[Any, bool]:
        return sd_models.model_data.sd_model, False

    saved = [(m, m.__dict__.get("forge_model_reload")) for m in (sd_models, processing)
             if "forge_model_reload" in m.__dict__]
    for m, _ in saved:
        m.forge_model_reload = forge_model_reload
    try:
        yield
    finally:
        for m, fn in saved:
            m.forge_model_reload = fn
