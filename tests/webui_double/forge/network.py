"""extensions-builtin/sd_forge_lora/network.py: light objects; Forge keeps LoRA data in patchers."""
import os


class NetworkOnDisk:
    def __init__(self, name, filename):
        self.name = name
        self.filename = filename
        self.alias = name
        self.metadata = {}
        self.hash = None
        self.shorthash = None

    def read_hash(self):
        if not self.hash:
            self.hash = "cd" * 32
            self.shorthash = self.hash[:12]


class Network:
    def __init__(self, name, network_on_disk):
        self.name = name
        self.network_on_disk = network_on_disk
        self.te_multiplier = 1.0
        self.unet_multiplier = 1.0
        self.dyn_dim = None
        self.modules = {}
        self.mtime = None
        self.mentioned_name = None


_ = os
