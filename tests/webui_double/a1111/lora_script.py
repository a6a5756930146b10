"""What extensions-builtin/Lora/scripts/lora_script.py wires up (run by the harness)."""
import double_models
import extra_networks_lora
import networks
from modules import extra_networks, script_callbacks


def install():
    double_models.LAYER_HOOK = networks.network_apply_weights  # lora_patches: every patched forward
    networks.extra_network_lora = extra_networks_lora.ExtraNetworkLora()
    extra_networks.register_extra_network(networks.extra_network_lora)
    extra_networks.register_extra_network_alias(networks.extra_network_lora, "lyco")
    script_callbacks.on_model_loaded(networks.assign_network_names_to_compvis_modules)
