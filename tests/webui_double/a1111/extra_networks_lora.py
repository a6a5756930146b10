"""extensions-builtin/Lora/extra_networks_lora.py: te = positional[1] or te=, unet = positional[2] or
unet= (default te), dyn = positional[3] or dyn=; other named arguments are ignored."""
import networks
from modules import extra_networks


class ExtraNetworkLora(extra_networks.ExtraNetwork):
    def __init__(self):
        super().__init__("lora")
        self.errors = {}

    def activate(self, p, params_list):
        names, te_multipliers, unet_multipliers, dyn_dims = [], [], [], []
        for params in params_list:
            assert params.items
            names.append(params.positional[0])
            te = float(params.positional[1]) if len(params.positional) > 1 else 1.0
            te = float(params.named.get("te", te))
            unet = float(params.positional[2]) if len(params.positional) > 2 else te
            unet = float(params.named.get("unet", unet))
            dyn = int(params.positional[3]) if len(params.positional) > 3 else None
            dyn = int(params.named["dyn"]) if "dyn" in params.named else dyn
            te_multipliers.append(te)
            unet_multipliers.append(unet)
            dyn_dims.append(dyn)
        networks.load_networks(names, te_multipliers, unet_multipliers, dyn_dims)

    def deactivate(self, p):
        pass
