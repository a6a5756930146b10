"""backend/patcher/lora.py of Neo (9bb88948, "ComfyUI v0.3.77"; the LoraLoader is the same at 283cb2c4).

`LoraLoader.refresh(lora_patches, offload_device, force_refresh=False)` does nothing when
`str(list(lora_patches.keys()))` equals `loaded_hash`; otherwise it restores its backups and merges every
patch list into the parameters with `merge_lora_to_weight`. There each entry is
`(strength, v, strength_model, offset, function)`: `offset` narrows the weight to a slice (Flux's fused
qkv), and `v` is either a weight adapter object (`v.calculate_weight(weight, key, strength, ...)`) or a
tuple `("diff", (w,))` / `("set", (w,))`."""
import torch

from modules_forge.packages.comfy import weight_adapter


def merge_lora_to_weight(patches, weight, key="online_lora", computation_dtype=torch.float32):
    weight = weight.to(computation_dtype).clone()
    for p in patches:
        strength, v, strength_model, offset, function = p[0], p[1], p[2], p[3], p[4]
        if function is None:
            function = lambda a: a  # noqa: E731
        old_weight = None
        if offset is not None:
            old_weight = weight
            weight = weight.narrow(offset[0], offset[1], offset[2])
        if strength_model != 1.0:
            weight *= strength_model
        if isinstance(v, weight_adapter.WeightAdapterBase):
            out = v.calculate_weight(weight, key, strength, strength_model, offset, function, computation_dtype)
            if out is not None:
                weight = out
        elif v[0] == "diff":
            weight += function(strength * v[1][0].to(weight.dtype))
        elif v[0] == "set":
            weight.copy_(v[1][0])
        if old_weight is not None:
            weight = old_weight
    return weight


def _get_parent(model, key):
    *path, last = key.split(".")
    obj = model
    for part in path:
        obj = getattr(obj, part)
    return obj, last


class LoraLoader:
    def __init__(self, model):
        self.model = model
        self.backup = {}
        self.online_backup = []
        self.loaded_hash = str([])
        self.merges = 0  # how often patches were (re)merged (tests read it)

    @torch.inference_mode()
    def refresh(self, lora_patches, offload_device=torch.device("cpu"), force_refresh=False):
        hashes = str(list(lora_patches.keys()))
        if hashes == self.loaded_hash and not force_refresh:
            return
        all_patches = {}
        for (_, _, _, online_mode), patches in lora_patches.items():
            for key, current in patches.items():
                all_patches[(key, online_mode)] = all_patches.get((key, online_mode), []) + current
        for k, w in self.backup.items():
            parent, name = _get_parent(self.model, k)
            setattr(parent, name, torch.nn.Parameter(w, requires_grad=False))
        self.backup = {}
        for (key, online_mode), current in all_patches.items():
            parent, name = _get_parent(self.model, key)
            weight = getattr(parent, name)
            assert isinstance(weight, torch.nn.Parameter)
            if key not in self.backup:
                self.backup[key] = weight.to(device=offload_device)
            merged = merge_lora_to_weight(current, weight, key).to(weight.dtype)
            setattr(parent, name, torch.nn.Parameter(merged, requires_grad=False))
        if all_patches:
            self.merges += 1
        self.loaded_hash = hashes
