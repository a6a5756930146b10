"""extensions-builtin/sd_forge_lora/networks.py of Neo (283cb2c4; 4e2c21f9 and 19cc8799 in the code
index have the same flow).

As in Forge, `load_networks` returns early when the compiled list `[filename, unet, te, online_mode]`
equals `current_lora_hash`, else resets the engine's unet/clip to `forge_objects_original`, calls
`load_lora_for_models` per LoRA and stores `forge_objects_after_applying_lora`. Neo's differences that
matter here: online mode comes from `dynamic_args` and is forced off for fp32/fp16/bf16 storage; the
patch values come from `comfy.lora.load_lora`, which makes **weight adapter objects** (`LoRAAdapter`),
not tuples; a LoRA with more than half of its keys unmatched is skipped with a warning; the patches go
in with `add_patches(filename=, patches=, strength_patch=, online_mode=)` (base.py keeps them in
`lora_patches`, keyed `(filename, strength_patch, strength_model, online_mode)`)."""
import functools
import os
import re
from collections import Counter

import torch

import network
from backend.args import dynamic_args
from backend.utils import load_torch_file
from modules import sd_models
from modules_forge.packages.comfy import weight_adapter

available_networks = {}
available_network_aliases = {}
loaded_networks = []
disk_loads = Counter()


@functools.lru_cache(maxsize=5)
def load_lora_state_dict(filename):
    disk_loads[os.path.basename(filename)] += 1
    return load_torch_file(filename, safe_load=True)


def _swap_halves(t):
    h = t.shape[0] // 2
    return torch.cat([t[h:], t[:h]], 0)


def model_lora_keys_unet(model):
    """comfy/lora.py `model_lora_keys_unet` (0cc5e9ea): `lora_unet_<key with _>` and `diffusion_model.<key>`
    for every diffusion_model weight; on Flux also the diffusers names (`transformer.<name>`,
    `lora_transformer_<name with _>`), which `flux_to_diffusers` maps to `(fused key, (0, start, rows))`
    for split q/k/v. The table here is the tests' own (tests/flux_lora_synth.py), not lib_merge's."""
    keys = {}
    names = [k for k, _ in model.named_parameters()]
    for k in names:
        if k.startswith("diffusion_model.") and k.endswith(".weight"):
            keys["lora_unet_" + k[len("diffusion_model."):-len(".weight")].replace(".", "_")] = k
            keys[k[:-len(".weight")]] = k
    if "diffusion_model.double_blocks.0.img_attn.qkv.weight" in names:
        from tests.flux_lora_synth import full_table
        n_double = len({k.split(".")[2] for k in names if k.startswith("diffusion_model.double_blocks.")})
        n_single = len({k.split(".")[2] for k in names if k.startswith("diffusion_model.single_blocks.")})
        for diff, (bfl, rows) in full_table(n_double, n_single).items():
            key = f"diffusion_model.{bfl}.weight"
            to = key if rows is None else (key, (0, rows[0], rows[1] - rows[0]))
            if diff == "norm_out.linear":  # comfy: (key, None, swap_scale_shift): diffusers keeps shift, scale
                to = (key, None, _swap_halves)
            keys["transformer." + diff] = to
            keys["lora_transformer_" + diff.replace(".", "_")] = to
    return keys


def model_lora_keys_clip(cond_stage_model):
    """comfy/lora.py `model_lora_keys_clip` (0cc5e9ea): CLIP-L answers `lora_te_` and `lora_te1_`, CLIP-G
    `lora_te2_` when CLIP-L is there; T5 `lora_te2_` after CLIP-L alone (Flux, OneTrainer's naming)."""
    keys = {}
    mods = cond_stage_model._modules
    for k, _ in cond_stage_model.named_parameters():
        m = re.fullmatch(r"clip_([lg])\.transformer\.(text_model\..+)\.weight", k)
        if m:
            under = m.group(2).replace(".", "_")
            if m.group(1) == "l":
                keys["lora_te_" + under] = keys["lora_te1_" + under] = k
                keys["text_encoder." + m.group(2)] = k  # diffusers
            else:
                keys["lora_te2_" + under] = k
                keys["text_encoder_2." + m.group(2)] = k
        t = re.fullmatch(r"t5xxl\.transformer\.(.+)\.weight", k)
        if t:
            index = 2 + ("clip_g" in mods)
            keys[f"lora_te{index}_" + t.group(1).replace(".", "_")] = k
    return keys


def load_lora(lora, to_load):
    """comfy/lora.py `load_lora` (0cc5e9ea): one adapter object per module, from `weight_adapter.adapters`."""
    patch_dict, loaded = {}, set()
    for x, target in to_load.items():
        alpha = lora[f"{x}.alpha"].item() if f"{x}.alpha" in lora else None
        if alpha is not None:
            loaded.add(f"{x}.alpha")
        for adapter_cls in weight_adapter.adapters:
            adapter = adapter_cls.load(x, lora, alpha, None, loaded)
            if adapter is not None:
                patch_dict[target] = adapter
                loaded |= adapter.loaded_keys
    return patch_dict, {k: v for k, v in lora.items() if k not in loaded}


def load_lora_for_models(model, clip, lora, strength_model, strength_clip, filename="default", online_mode=False):
    lora_unet, rest = load_lora(lora, model_lora_keys_unet(model.model))
    lora_clip, rest = load_lora(rest, model_lora_keys_clip(clip.cond_stage_model)) if clip is not None else ({}, rest)
    if len(rest) / len(lora) > 0.5:
        print(f"[LORA] LoRA mismatch for {type(model.model).__name__}: {filename}")
        return model, clip
    if lora_unet:
        new_model = model.clone()
        new_model.add_patches(filename=filename, patches=lora_unet, strength_patch=strength_model, online_mode=online_mode)
        model = new_model
    if clip is not None and lora_clip:
        new_clip = clip.clone()
        new_clip.add_patches(filename=filename, patches=lora_clip, strength_patch=strength_clip, online_mode=online_mode)
        clip = new_clip
    return model, clip


def load_networks(names, te_multipliers=None, unet_multipliers=None, dyn_dims=None):
    current_sd = sd_models.model_data.get_sd_model()
    if current_sd is None:
        return
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
    online_mode = dynamic_args.get("online_lora", False)
    if current_sd.forge_objects.unet.model.storage_dtype in [torch.float32, torch.float16, torch.bfloat16]:
        online_mode = False
    compiled = [[n.filename, u, t, online_mode]
                for n, u, t in zip(networks_on_disk, unet_multipliers, te_multipliers) if n is not None]
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
