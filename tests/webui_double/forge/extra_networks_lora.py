"""extensions-builtin/sd_forge_lora/extra_networks_lora.py (same argument rules as A1111's)."""
import networks
from modules import extra_networks


class ExtraNetworkLora(extra_networks.ExtraNetwork):
    def __init__(self):
        super().__init__("lora")

    def activate(self, p, params_list):
        names, te_multipliers, unet_multipliers, dyn_dims = [], [], [], []
        for params in params_list:
            names.append(params.positional[0])
            te = float(params.positional[1]) if len(params.positional) > 1 else 1.0
            te = float(params.named.get("te", te))
            unet = float(params.positional[2]) if len(params.positional) > 2 else te
            unet = float(params.named.get("unet", unet))
            te_multipliers.append(te)
            unet_multipliers.append(unet)
            dyn_dims.append(None)
        networks.load_networks(names, te_multipliers, unet_multipliers, dyn_dims)

    def deactivate(self, p):
        pass
