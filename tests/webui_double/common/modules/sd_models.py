"""modules/sd_models.py. The checkpoint list is the same in both webuis; loading differs:

- A1111: `load_model(info, already_loaded_state_dict)` builds a new model (popping what it loads
  from the dict, as LoadStateDictOnMeta does), writes the selected checkpoint to the options unless
  `SkipWritingToConfig`, caches the state dict when `sd_checkpoint_cache > 0`;
  `reload_model_weights()` keeps the model when its filename is the selected one.
- Forge: those are stubs; `forge_model_reload()` loads when `forge_loading_parameters` changed.
- Forge Neo (283cb2c4): `load_model`, `read_state_dict`, `reload_model_weights` and `load_model_weights`
  do not exist at all (SuperMerger PR #478); `forge_loader` is imported at module level; a failed
  load leaves `model_data.sd_model` None (the old engine is freed first). Newer Neo also removed
  `modules/sd_hijack.py` (SuperMerger #473): the Neo double has no usable sd_hijack.
"""
import collections
import importlib.util
import os
import re

import safetensors.torch

from modules import paths_internal, script_callbacks, shared

FORGE = importlib.util.find_spec("modules_forge") is not None
NEO = FORGE and importlib.util.find_spec("modules_forge.forge_version") is not None
if NEO:
    from backend.loader import forge_loader
else:
    from modules import sd_hijack

model_path = os.path.join(paths_internal.models_path, "Stable-diffusion")
checkpoints_list = {}
checkpoint_aliases = {}
checkpoints_loaded = collections.OrderedDict()
re_strip_checksum = re.compile(r"\s*\[[^]]+]\s*$")
calls = []  # what was called, for tests


class CheckpointInfo:
    def __init__(self, filename):
        self.filename = filename
        abspath = os.path.abspath(filename)
        name = abspath[len(model_path):].lstrip("/\\") if abspath.startswith(model_path) else os.path.basename(filename)
        self.name = name
        self.name_for_extra = os.path.splitext(os.path.basename(filename))[0]
        self.model_name = os.path.splitext(name.replace("/", "_").replace("\\", "_"))[0]
        self.hash = "0" * 8
        self.sha256 = None
        self.shorthash = None
        self.title = name
        self.short_title = self.name_for_extra
        self.ids = [self.hash, self.model_name, self.title, name, self.name_for_extra, f"{name} [{self.hash}]"]
        self.metadata = {}

    def register(self):
        checkpoints_list[self.title] = self
        for i in self.ids:
            checkpoint_aliases[i] = self

    def calculate_shorthash(self):
        calls.append(("calculate_shorthash", self.name))
        return self.shorthash


def list_models():
    calls.append(("list_models",))
    checkpoints_list.clear()
    checkpoint_aliases.clear()
    if not os.path.isdir(model_path):
        return
    for root, _, files in os.walk(model_path):
        for f in sorted(files):
            if f.endswith((".safetensors", ".ckpt")):
                CheckpointInfo(os.path.join(root, f)).register()


def get_closet_checkpoint_match(search_string):
    if not search_string:
        return None
    info = checkpoint_aliases.get(search_string)
    if info is not None:
        return info
    found = sorted([i for i in checkpoints_list.values() if search_string in i.title], key=lambda x: len(x.title))
    if found:
        return found[0]
    plain = re.sub(re_strip_checksum, "", search_string)
    found = sorted([i for i in checkpoints_list.values() if plain in i.title], key=lambda x: len(x.title))
    return found[0] if found else None


def select_checkpoint():
    info = checkpoint_aliases.get(shared.opts.sd_model_checkpoint)
    if info is not None:
        return info
    return next(iter(checkpoints_list.values()), None)


def read_state_dict(checkpoint_file, map_location=None):
    if FORGE:
        return None
    calls.append(("read_state_dict", checkpoint_file))
    return safetensors.torch.load_file(checkpoint_file)


class SkipWritingToConfig:
    skip = False
    previous = None

    def __enter__(self):
        self.previous = SkipWritingToConfig.skip
        SkipWritingToConfig.skip = True
        return self

    def __exit__(self, *exc):
        SkipWritingToConfig.skip = self.previous


class FakeInitialModel:
    def __init__(self):
        self.cond_stage_model = None


class SdModelData:
    def __init__(self):
        self.sd_model = FakeInitialModel() if FORGE else None
        self.forge_loading_parameters = {}
        self.forge_hash = ""

    def get_sd_model(self):
        return self.sd_model

    def set_sd_model(self, v):
        self.sd_model = v
        shared.sd_model = v


model_data = SdModelData()
shared.sd_model = model_data.sd_model


# ---- A1111 ----------------------------------------------------------------------------------------
def load_model_weights(model, checkpoint_info, state_dict, timer=None):
    checkpoint_info.calculate_shorthash()
    if not SkipWritingToConfig.skip:
        shared.opts.data["sd_model_checkpoint"] = checkpoint_info.title
    if state_dict is None:
        state_dict = checkpoints_loaded.get(checkpoint_info) or read_state_dict(checkpoint_info.filename)
    if shared.opts.sd_checkpoint_cache > 0:
        checkpoints_loaded[checkpoint_info] = dict(state_dict)
    model.load_state_dict(state_dict, strict=False)
    for k in list(state_dict):  # LoadStateDictOnMeta pops what it loads
        state_dict.pop(k)
    model.sd_model_checkpoint = checkpoint_info.filename
    model.sd_checkpoint_info = checkpoint_info


def load_model(checkpoint_info=None, already_loaded_state_dict=None):
    if FORGE:
        return None
    from double_models import SDModel
    checkpoint_info = checkpoint_info or select_checkpoint()
    calls.append(("load_model", checkpoint_info.name, already_loaded_state_dict is not None,
                  SkipWritingToConfig.skip))
    sd = already_loaded_state_dict if already_loaded_state_dict is not None else read_state_dict(checkpoint_info.filename)
    model = SDModel(dict(sd))
    load_model_weights(model, checkpoint_info, sd)
    sd_hijack.model_hijack.hijack(model)
    model_data.set_sd_model(model)
    script_callbacks.model_loaded_callback(model)
    return model


def reload_model_weights(sd_model=None, info=None, forced_reload=False):
    if FORGE:
        return None
    checkpoint_info = info or select_checkpoint()
    sd_model = sd_model or model_data.sd_model
    if sd_model is None:
        return load_model(checkpoint_info)
    if sd_model.sd_model_checkpoint == checkpoint_info.filename and not forced_reload:
        return sd_model
    calls.append(("reload_model_weights", checkpoint_info.name, forced_reload))
    sd = checkpoints_loaded.get(checkpoint_info) or read_state_dict(checkpoint_info.filename)
    sd_hijack.model_hijack.undo_hijack(sd_model)
    try:
        load_model_weights(sd_model, checkpoint_info, dict(sd))
    finally:
        sd_hijack.model_hijack.hijack(sd_model)
        script_callbacks.model_loaded_callback(sd_model)
    model_data.set_sd_model(sd_model)
    return sd_model


# ---- Forge ----------------------------------------------------------------------------------------
def forge_model_reload():
    current_hash = str(model_data.forge_loading_parameters)
    if model_data.forge_hash == current_hash:
        return model_data.sd_model, False
    calls.append(("forge_model_reload", model_data.forge_loading_parameters["checkpoint_info"].name))
    from backend import memory_management
    memory_management.unload_all_models()
    info = model_data.forge_loading_parameters["checkpoint_info"]
    if NEO:
        model_data.set_sd_model(None)  # Neo frees the old engine before it loads the new one
        model_data.forge_hash = ""
        sd_model = forge_loader(info.filename, additional_state_dicts=model_data.forge_loading_parameters.get(
            "additional_modules", []))
    else:
        from backend.loader import forge_loader as load
        sd_model = load(info.filename)
    sd_model.sd_checkpoint_info = info
    sd_model.filename = info.filename
    sd_model.sd_model_hash = info.calculate_shorthash()
    model_data.set_sd_model(sd_model)
    script_callbacks.model_loaded_callback(sd_model)
    model_data.forge_hash = current_hash
    return sd_model, True


if NEO:
    del load_model, read_state_dict, reload_model_weights, load_model_weights
