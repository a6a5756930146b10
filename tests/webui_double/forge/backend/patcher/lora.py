"""backend/patcher/lora.py: LoraLoader merges patches into the module's Parameters; it does nothing
when the list of patch keys equals the one merged last (`loaded_hash`), unless forced."""
import torch


def merge_lora_to_weight(patches, weight):
    weight = weight.to(torch.float32).clone()
    for p in patches:
        strength, v, strength_model, offset, function = p
        if strength_model != 1.0:
            weight *= strength_model
        kind, payload = v
        if kind == "lora":
            up, down, alpha, mid, dora = payload
            scale = alpha / down.shape[0] if alpha is not None else 1.0
            weight += strength * scale * (up.float().flatten(1) @ down.float().flatten(1)).reshape(weight.shape)
        elif kind == "diff":
            weight += strength * payload[0].float()
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
            merged = merge_lora_to_weight(current, weight).to(weight.dtype)
            setattr(parent, name, torch.nn.Parameter(merged, requires_grad=False))
        if all_patches:
            self.merges += 1
        self.loaded_hash = hashes
