"""modules_forge/packages/comfy/weight_adapter (a package in Neo; one module here).

Neo's comfy/lora.py (0cc5e9ea, "ComfyUI v0.3.77") builds each LoRA patch with
`for adapter_cls in weight_adapter.adapters: adapter = adapter_cls.load(x, lora, alpha, dora_scale, loaded_keys)`
and backend/patcher/lora.py (9bb88948) merges it with
`v.calculate_weight(weight, key, strength, strength_model, offset, function, computation_dtype)`.
The adapter is an object, not a tuple: LBW's `v[1][0]` fails with "'LoRAAdapter' object is not
subscriptable" (LBW #192). Only the LoRA kind is modelled here (what the tests' LoRAs are)."""
import torch


class WeightAdapterBase:
    name: str
    loaded_keys: set
    weights: tuple

    @classmethod
    def load(cls, x, lora, alpha, dora_scale, loaded_keys=None):
        raise NotImplementedError

    def calculate_weight(self, weight, key, strength, strength_model, offset, function,
                         intermediate_dtype=torch.float32, original_weight=None):
        raise NotImplementedError


class LoRAAdapter(WeightAdapterBase):
    name = "lora"

    def __init__(self, loaded_keys, weights):
        self.loaded_keys = loaded_keys
        self.weights = weights  # (up, down, alpha, mid, dora_scale, reshape)

    @classmethod
    def load(cls, x, lora, alpha, dora_scale, loaded_keys=None):
        for up_name, down_name in ((f"{x}.lora_up.weight", f"{x}.lora_down.weight"),
                                   (f"{x}.lora_B.weight", f"{x}.lora_A.weight")):
            if up_name in lora:
                keys = {up_name, down_name}
                return cls(keys, (lora[up_name], lora[down_name], alpha, None, dora_scale, None))
        return None

    def calculate_weight(self, weight, key, strength, strength_model, offset, function,
                         intermediate_dtype=torch.float32, original_weight=None):
        up, down, alpha, mid, dora_scale, reshape = self.weights
        scale = alpha / down.shape[0] if alpha is not None else 1.0
        diff = (up.to(intermediate_dtype).flatten(1) @ down.to(intermediate_dtype).flatten(1)).reshape(weight.shape)
        weight += function((strength * scale) * diff).type(weight.dtype)
        return weight


adapters = [LoRAAdapter]
