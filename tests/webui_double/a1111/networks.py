"""extensions-builtin/Lora/networks.py (A1111 1.10): loading, the memory cache, and applying weights.

Faithful in what BlockMerge relies on: `load_networks` reuses a net with the same `.name` from
`loaded_networks`, then `networks_in_memory[name]`, else reads the file (counted in `disk_loads`),
sets the multipliers on the Network, and trims `networks_in_memory` to `lora_in_memory_limit`;
`network_apply_weights` re-merges a layer only when the tuple of (name, te, unet, dyn) over
`loaded_networks` differs from the one stored on the layer, restoring from its CPU backup first.
Kohya names are mapped to layer names for compvis-style files (`lora_unet_input_blocks_...`).
"""
import os
import re
from collections import Counter, namedtuple

import safetensors.torch
import torch

import network
from modules import errors, shared

NetworkWeights = namedtuple("NetworkWeights", ["network_key", "sd_key", "w", "sd_module"])
re_x_proj = re.compile(r"(.*)_([qkv]_proj)$")

available_networks = {}
available_network_aliases = {}
loaded_networks = []
networks_in_memory = {}
extra_network_lora = None
disk_loads = Counter()
merges = Counter()  # layer name -> how often its weights were recomputed


def assign_network_names_to_compvis_modules(sd_model):
    mapping = {}
    if sd_model.is_sdxl:
        for i, embedder in enumerate(sd_model.conditioner.embedders):
            if not hasattr(embedder, "wrapped"):
                continue
            for name, module in embedder.wrapped.named_modules():
                mapping[f"{i}_{name.replace('.', '_')}"] = module
                module.network_layer_name = f"{i}_{name.replace('.', '_')}"
    else:
        cond = getattr(sd_model.cond_stage_model, "wrapped", sd_model.cond_stage_model)
        for name, module in cond.named_modules():
            mapping[name.replace(".", "_")] = module
            module.network_layer_name = name.replace(".", "_")
    for name, module in sd_model.model.named_modules():
        mapping[name.replace(".", "_")] = module
        module.network_layer_name = name.replace(".", "_")
    sd_model.network_layer_mapping = mapping


def _layer_key(key):
    if key.startswith("lora_unet_"):
        return "diffusion_model_" + key[len("lora_unet_"):]
    if key.startswith("lora_te1_text_model"):
        return "0_transformer_text_model" + key[len("lora_te1_text_model"):]
    if key.startswith("lora_te_text_model"):
        return "transformer_text_model" + key[len("lora_te_text_model"):]
    m = re.fullmatch(r"lora_te2_text_model_encoder_layers_(\d+)_(.+)", key)
    if m:
        rest = m.group(2).replace("self_attn", "attn").replace("mlp_fc1", "mlp_c_fc").replace("mlp_fc2", "mlp_c_proj")
        return f"1_model_transformer_resblocks_{m.group(1)}_{rest}"
    return key


def load_network(name, network_on_disk):
    disk_loads[name] += 1
    net = network.Network(name, network_on_disk)
    net.mtime = os.path.getmtime(network_on_disk.filename)
    sd = safetensors.torch.load_file(network_on_disk.filename)
    mapping = shared.sd_model.network_layer_mapping
    matched = {}
    for key_network, weight in sd.items():
        base, _, part = key_network.partition(".")
        key = _layer_key(base)
        sd_module = mapping.get(key)
        if sd_module is None:
            m = re_x_proj.match(key)
            if m:
                sd_module = mapping.get(m.group(1))
        if sd_module is None:
            continue
        matched.setdefault(key, NetworkWeights(key_network, key, {}, sd_module)).w[part] = weight
    for key, weights in matched.items():
        net.modules[key] = network.NetworkModuleLora(net, weights)
    return net


def purge_networks_from_memory():
    while len(networks_in_memory) > shared.opts.lora_in_memory_limit and len(networks_in_memory) > 0:
        networks_in_memory.pop(next(iter(networks_in_memory)), None)


def load_networks(names, te_multipliers=None, unet_multipliers=None, dyn_dims=None):
    already_loaded = {}
    for net in loaded_networks:
        if net.name in names:
            already_loaded[net.name] = net
    loaded_networks.clear()
    for i, name in enumerate(names):
        network_on_disk = available_network_aliases.get(name)
        net = already_loaded.get(name)
        if network_on_disk is not None:
            if net is None:
                net = networks_in_memory.get(name)
            if net is None or os.path.getmtime(network_on_disk.filename) > net.mtime:
                net = load_network(name, network_on_disk)
                networks_in_memory.pop(name, None)
                networks_in_memory[name] = net
            net.mentioned_name = name
            network_on_disk.read_hash()
        if net is None:
            continue
        net.te_multiplier = te_multipliers[i] if te_multipliers else 1.0
        net.unet_multiplier = unet_multipliers[i] if unet_multipliers else 1.0
        net.dyn_dim = dyn_dims[i] if dyn_dims else 1.0
        loaded_networks.append(net)
    purge_networks_from_memory()


def network_restore_weights_from_backup(self):
    w = getattr(self, "network_weights_backup", None)
    if w is None:
        return
    if "in_proj_weight" in self._parameters:
        self.in_proj_weight.copy_(w[0])
        self.out_proj.weight.copy_(w[1])
    else:
        self.weight.copy_(w)


def network_apply_weights(self):
    name = getattr(self, "network_layer_name", None)
    if name is None:
        return
    current_names = getattr(self, "network_current_names", ())
    wanted_names = tuple((x.name, x.te_multiplier, x.unet_multiplier, x.dyn_dim) for x in loaded_networks)
    mha = "in_proj_weight" in self._parameters
    if getattr(self, "network_weights_backup", None) is None and wanted_names != ():
        if current_names != ():
            raise RuntimeError("no backup weights found and current weights are not unchanged")
        self.network_weights_backup = (self.in_proj_weight.to("cpu", copy=True), self.out_proj.weight.to("cpu", copy=True)) \
            if mha else self.weight.to("cpu", copy=True)
    if current_names == wanted_names:
        return
    merges[name] += 1
    network_restore_weights_from_backup(self)
    with torch.no_grad():
        for net in loaded_networks:
            module = net.modules.get(name)
            if module is not None and not mha:
                updown, _ = module.calc_updown(self.weight)
                self.weight.copy_((self.weight.to(updown.dtype) + updown).to(self.weight.dtype))
                continue
            parts = [net.modules.get(f"{name}_{p}") for p in ("q_proj", "k_proj", "v_proj", "out_proj")]
            if mha and all(parts):
                q, k, v = self.in_proj_weight.chunk(3, 0)
                qkv = torch.vstack([parts[0].calc_updown(q)[0], parts[1].calc_updown(k)[0], parts[2].calc_updown(v)[0]])
                self.in_proj_weight += qkv.to(self.in_proj_weight.dtype)
                self.out_proj.weight += parts[3].calc_updown(self.out_proj.weight)[0].to(self.out_proj.weight.dtype)
    self.network_current_names = wanted_names


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
    networks_in_memory.clear()
    disk_loads.clear()
    merges.clear()
    errors.reported.clear()
