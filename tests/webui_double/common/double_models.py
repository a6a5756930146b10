"""Tiny stand-ins for the webuis' model objects, built from a checkpoint's own keys (tests/synth.py
writes checkpoints with every real key name), so state-dict names are exactly the real ones.

A1111: `SDModel` is LatentDiffusion / DiffusionEngine as far as BlockMerge sees it: `.model.diffusion_model`,
`.cond_stage_model` (SD1/SD2) or `.conditioner.embedders` (SDXL), `.first_stage_model`, the `is_sd*`
flags and `sd_checkpoint_info`. Every layer stands for a torch layer patched by the Lora extension:
a "forward" calls `LAYER_HOOK(layer)` (the builtin's network_apply_weights) and loading a state dict
into it drops the builtin's per-layer cache, as lora_patches' `_load_from_state_dict` does.
"""
import torch

LAYER_HOOK = None  # set by the builtin Lora double when it is imported (lora_patches)


class Node(torch.nn.Module):
    """A module holding the parameters its keys name (weight, bias, in_proj_weight, ...)."""

    def _load_from_state_dict(self, *args, **kwargs):
        self.network_current_names = ()
        self.network_weights_backup = None
        self.network_bias_backup = None
        return super()._load_from_state_dict(*args, **kwargs)

    @property
    def is_layer(self):
        return "weight" in self._parameters or "in_proj_weight" in self._parameters


def build_tree(sd, root=None):
    """A module tree whose state_dict() has exactly the keys (and shapes, dtypes) of `sd`."""
    root = root if root is not None else Node()
    for key, t in sd.items():
        *path, param = key.split(".")
        node = root
        for part in path:
            child = node._modules.get(part)
            if child is None:
                child = Node()
                node.add_module(part, child)
            node = child
        value = torch.zeros(t.shape, dtype=t.dtype)
        if t.dtype.is_floating_point:
            node.register_parameter(param, torch.nn.Parameter(value, requires_grad=False))
        else:
            node.register_buffer(param, value)
    root.load_state_dict(sd, strict=True)
    return root


class SDModel(Node):
    """The A1111 model object: built from a checkpoint's state dict."""

    def __init__(self, sd, checkpoint_info=None):
        super().__init__()
        build_tree(sd, self)
        self.is_sdxl = hasattr(self, "conditioner")
        self.is_sd2 = not self.is_sdxl and hasattr(self.cond_stage_model, "model")
        self.is_sd1 = not self.is_sdxl and not self.is_sd2
        if self.is_sdxl:
            emb = self.conditioner.embedders
            self.conditioner.embedders = torch.nn.ModuleList([emb._modules[k] for k in sorted(emb._modules, key=int)])
        for m in self.modules():  # MultiheadAttention uses out_proj's weight itself; its forward never runs
            if "in_proj_weight" in m._parameters and "out_proj" in m._modules:
                m.out_proj.inside_mha = True
        self.sd_checkpoint_info = checkpoint_info
        self.sd_model_checkpoint = checkpoint_info.filename if checkpoint_info else None
        self.lowvram = False
        self.used_config = "sdxl.yaml" if self.is_sdxl else ("sd2.yaml" if self.is_sd2 else "sd1.yaml")

    def text_encoders(self):
        return list(self.conditioner.embedders) if self.is_sdxl else [self.cond_stage_model]

    def _run(self, modules):
        out = {}
        for m in modules:
            for _, layer in m.named_modules():
                if isinstance(layer, Node) and layer.is_layer and getattr(layer, "network_layer_name", None) \
                        and not getattr(layer, "inside_mha", False):
                    if LAYER_HOOK is not None:
                        LAYER_HOOK(layer)
                    w = layer._parameters.get("weight", layer._parameters.get("in_proj_weight"))
                    out[layer.network_layer_name] = w.detach().clone()
        return out

    def run_text_encoder(self):
        """A text-encoder forward: the Lora extension merges LoRAs into each layer first."""
        return self._run(self.text_encoders())

    def run_unet(self):
        return self._run([self.model.diffusion_model])
