"""What extensions-builtin/sd_forge_lora/scripts/lora_script.py wires up (run by the harness)."""
import extra_networks_lora
import networks
from modules import extra_networks


def install():
    networks.extra_network_lora = extra_networks_lora.ExtraNetworkLora()
    extra_networks.register_extra_network(networks.extra_network_lora)
