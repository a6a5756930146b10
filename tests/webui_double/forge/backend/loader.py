"""backend/loader.py: forge_loader(path) -> engine. It accepts a *path* only (as Forge does); the
engine is built by double_engine.build_engine."""
import safetensors.torch

from backend.diffusion_engine.base import StableDiffusion, StableDiffusionXL
from double_engine import build_engine


def forge_loader(sd, additional_state_dicts=None):
    sd.lower()  # a path, as in Forge: a dict raises here
    return build_engine(safetensors.torch.load_file(sd), StableDiffusion, StableDiffusionXL)
