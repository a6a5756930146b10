"""backend/patcher/base.py of Neo (283cb2c4): the Forge double's ModelPatcher with Neo's `add_patches`,
which also takes `(key, offset[, function])` tuples as patch keys (a Flux diffusers LoRA's to_q/to_k/to_v
land on slices of the fused qkv weight) and files `[strength_patch, value, strength_model, offset,
function]` lists under `(filename, strength_patch, strength_model, online_mode)`."""
import copy

from backend.patcher.lora import LoraLoader


class ModelPatcher:
    def __init__(self, model, load_device="cpu", offload_device="cpu", size=0, current_device=None, **kwargs):
        self.size = size
        self.model = model
        self.lora_patches = {}
        self.object_patches = {}
        self.model_options = {"transformer_options": {}}
        self.load_device, self.offload_device = load_device, offload_device
        if not hasattr(model, "lora_loader"):
            model.lora_loader = LoraLoader(model)
        self.lora_loader = model.lora_loader
        self.current_device = current_device or offload_device

    def clone(self):
        n = ModelPatcher(self.model, self.load_device, self.offload_device, self.size, self.current_device)
        n.__class__ = self.__class__
        n.lora_patches = self.lora_patches.copy()
        n.object_patches = self.object_patches.copy()
        n.model_options = copy.deepcopy(self.model_options)
        return n

    def is_clone(self, other):
        return hasattr(other, "model") and self.model is other.model

    def add_patches(self, *, filename, patches, strength_patch=1.0, strength_model=1.0, online_mode=False):
        lora_identifier = (filename, strength_patch, strength_model, online_mode)
        this_patches = {}
        p = set()
        model_keys = set(k for k, _ in self.model.named_parameters())
        for k in patches:
            offset = function = None
            if isinstance(k, str):
                key = k
            else:
                key, offset = k[0], k[1]
                if len(k) > 2:
                    function = k[2]
            if key in model_keys:
                p.add(k)
                this_patches.setdefault(key, []).append([strength_patch, patches[k], strength_model, offset, function])
        self.lora_patches[lora_identifier] = this_patches
        return p

    def has_online_lora(self):
        return any(online for (_, _, _, online) in self.lora_patches)

    def refresh_loras(self):
        self.lora_loader.refresh(lora_patches=self.lora_patches, offload_device=self.offload_device)


class UnetPatcher(ModelPatcher):
    pass
