"""backend/patcher: the Forge double's ModelPatcher (the same `lora_patches` design as Neo's base.py at
283cb2c4) with Neo's LoraLoader (lora.py here)."""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
