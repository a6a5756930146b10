"""extensions-builtin/Lora/network.py (A1111 1.10), the parts BlockMerge touches."""
import os


class NetworkOnDisk:
    def __init__(self, name, filename):
        self.name = name
        self.filename = filename
        self.metadata = {}
        self.is_safetensors = filename.endswith(".safetensors")
        self.alias = name
        self.hash = None
        self.shorthash = None
        self.sd_version = None

    def read_hash(self):
        if not self.hash:
            self.hash = "ab" * 32
            self.shorthash = self.hash[:12]


class Network:  # LoraModule
    def __init__(self, name, network_on_disk):
        self.name = name
        self.network_on_disk = network_on_disk
        self.te_multiplier = 1.0
        self.unet_multiplier = 1.0
        self.dyn_dim = None
        self.modules = {}
        self.bundle_embeddings = {}
        self.mtime = None
        self.mentioned_name = None


class NetworkModule:
    def __init__(self, net, weights):
        self.network = net
        self.network_key = weights.network_key
        self.sd_key = weights.sd_key
        self.sd_module = weights.sd_module
        self.shape = getattr(self.sd_module, "weight", None).shape if hasattr(self.sd_module, "weight") else None
        self.dim = None
        self.bias = weights.w.get("bias")
        self.alpha = weights.w["alpha"].item() if "alpha" in weights.w else None
        self.scale = weights.w["scale"].item() if "scale" in weights.w else None
        self.dora_scale = None

    def multiplier(self):
        if 'transformer' in self.sd_key[:20]:
            return self.network.te_multiplier
        else:
            return self.network.unet_multiplier

    def calc_scale(self):
        if self.scale is not None:
            return self.scale
        if self.dim is not None and self.alpha is not None:
            return self.alpha / self.dim
        return 1.0

    def finalize_updown(self, updown, orig_weight, output_shape, ex_bias=None):
        updown = updown.reshape(output_shape)
        if ex_bias is not None:
            ex_bias = ex_bias * self.multiplier()
        updown = updown * self.calc_scale()
        return updown * self.multiplier(), ex_bias


class NetworkModuleLora(NetworkModule):
    """network_lora.py: up @ down (linear layers only in this double)."""

    def __init__(self, net, weights):
        super().__init__(net, weights)
        self.up_model = weights.w["lora_up.weight"]
        self.down_model = weights.w["lora_down.weight"]
        self.dim = self.down_model.shape[0]

    def calc_updown(self, orig_weight):
        up = self.up_model.to(orig_weight.device, dtype=orig_weight.dtype)
        down = self.down_model.to(orig_weight.device, dtype=orig_weight.dtype)
        updown = up.reshape(up.shape[0], -1) @ down.reshape(down.shape[0], -1)  # rebuild_conventional
        return self.finalize_updown(updown, orig_weight, orig_weight.shape)


def getmtime(filename):
    return os.path.getmtime(filename)
