"""extensions-builtin/sd_forge_lora/networks.py: patches, not modules. `load_networks` returns early
when the compiled list [filename, unet, te, online] equals `current_lora_hash`; otherwise it resets the
engine's unet/clip to the originals, clones them once per LoRA with `add_patches`, and stores the
result in `forge_objects_after_applying_lora`. LoRA files are cached by an lru_cache of 5."""
import functools
import os
import re
from collections import Counter

import safetensors.torch

import network
from modules import sd_models

available_networks = {}
available_network_aliases = {}
loaded_networks = []
disk_loads = Counter()


@functools.lru_cache(maxsize=5)
def load_lora_state_dict(filename):
    disk_loads[os.path.basename(filename)] += 1
    return safetensors.torch.load_file(filename)


def _key_maps(unet, clip):
    keys = {}
    for k, _ in unet.model.named_parameters():
        if k.startswith("diffusion_model.") and k.endswith(".weight"):
            keys["lora_unet_" + k[len("diffusion_model."):-len(".weight")].replace(".", "_")] = k
    if clip is not None:
        xl = "clip_g" in clip.cond_stage_model._modules
        for k, _ in clip.cond_stage_model.named_parameters():
            m = re.fullmatch(r"clip_([lg])\.transformer\.(text_model\..+)\.weight", k)
            if m:
                prefix = ("lora_te1_" if xl else "lora_te_") if m.group(1) == "l" else "lora_te2_"
                keys[prefix + m.group(2).replace(".", "_")] = k
    return keys


def load_lora(lora, key_map):
    patch_dict, loaded = {}, set()
    for name, target in key_map.items():
        up, down = f"{name}.lora_up.weight", f"{name}.lora_down.weight"
        if up in lora and down in lora:
            alpha = lora.get(f"{name}.alpha")
            patch_dict[target] = ("lora", (lora[up], lora[down], None if alpha is None else float(alpha), None, None))
            loaded |= {up, down, f"{name}.alpha"}
    return patch_dict, {k: v for k, v in lora.items() if k not in loaded}


def load_lora_for_models(model, clip, lora, strength_model, strength_clip, filename="default", online_mode=False):
    key_map = _key_maps(model, clip)
    patches, _ = load_lora(lora, key_map)
    unet_patches = {k: v for k, v in patches.items() if k.startswith("diffusion_model.")}
    clip_patches = {k: v for k, v in patches.items() if not k.startswith("diffusion_model.")}
    new_model, new_clip = model.clone(), clip.clone()
    if unet_patches:
        new_model.add_patches(filename=filename, patches=unet_patches, strength_patch=strength_model, online_mode=online_mode)
        model = new_model
    if clip_patches:
        new_clip.add_patches(filename=filename, patches=clip_patches, strength_patch=strength_clip, online_mode=online_mode)
        clip = new_clip
    return model, clip


def load_networks(names, te_multipliers=None, unet_multipliers=None, dyn_dims=None):
    current_sd = sd_models.model_data.get_sd_model()
    loaded_networks.clear()
    networks_on_disk = [available_network_aliases.get(name) for name in names]
    for network_on_disk, name in zip(networks_on_disk, names):
        if network_on_disk is None:
            continue
        net = network.Network(name, network_on_disk)
        net.mtime = os.path.getmtime(network_on_disk.filename)
        net.mentioned_name = name
        network_on_disk.read_hash()
        loaded_networks.append(net)
    online_mode = False
    compiled = [[a.filename, b, c, online_mode]
                for a, b, c in zip(networks_on_disk, unet_multipliers, te_multipliers) if a is not None]
    compiled_hash = str(compiled)
    if current_sd.current_lora_hash == compiled_hash:
        return
    current_sd.current_lora_hash = compiled_hash
    current_sd.forge_objects.unet = current_sd.forge_objects_original.unet
    current_sd.forge_objects.clip = current_sd.forge_objects_original.clip
    for filename, strength_model, strength_clip, online_mode in compiled:
        lora_sd = load_lora_state_dict(filename)
        current_sd.forge_objects.unet, current_sd.forge_objects.clip = load_lora_for_models(
            current_sd.forge_objects.unet, current_sd.forge_objects.clip, lora_sd, strength_model, strength_clip,
            filename=filename, online_mode=online_mode)
    current_sd.forge_objects_after_applying_lora = current_sd.forge_objects.shallow_copy()


def list_available_networks(folder):
    available_networks.clear()
    available_network_aliases.clear()
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            name = os.path.splitext(f)[0]
            entry = network.NetworkOnDisk(name, os.path.join(folder, f))
            available_networks[name] = entry
            available_network_aliases[name] = entry


def reset():
    loaded_networks.clear()
    disk_loads.clear()
    load_lora_state_dict.cache_clear()
