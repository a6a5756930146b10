"""backend/loader.py of Forge Neo (283cb2c4; the same entry in bdf09140): `forge_loader(sd: os.PathLike,
additional_state_dicts)` takes a **path**. `split_state_dict(path)` reads it with `load_torch_file(path,
return_metadata=True)` (the name imported into this module from backend.utils), adds
`model.diffusion_model.` when no key has it (`preprocess_state_dict`), guesses the architecture
(here: SD1 / SDXL from the keys, anything else is not recognised), merges the user's extra modules
(`replace_state_dict`: a VAE file replaces `first_stage_model.*`). A failure inside becomes
`ValueError("Failed to recognize model type!")`. The path is read again for flags: `kontext` and qwen
`edit` in `dynamic_args`, and a `.yaml` next to it for the prediction type."""
import os

import backend.args
from backend.diffusion_engine.flux import Flux
from backend.diffusion_engine.sd15 import StableDiffusion
from backend.diffusion_engine.sdxl import StableDiffusionXL
from backend.utils import load_torch_file
from double_engine import build_engine


FLUX_KEY = "model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale"  # huggingface_guess detection


class FluxGuess:
    """model_list.Flux as far as BlockMerge sees it: the component prefixes."""
    unet_key_prefix = ["model.diffusion_model."]
    vae_key_prefix = ["vae."]
    text_encoder_key_prefix = ["text_encoders."]

    def process_clip_state_dict(self, state_dict):
        return {k[len("text_encoders."):]: v for k, v in state_dict.items() if k.startswith("text_encoders.")}


def _flux_engine(state):
    """Flux: the transformer under `diffusion_model`, CLIP-L and T5 as `clip_l.transformer.*` /
    `t5xxl.transformer.*` (what Neo's JointTextEncoder holds), the VAE from `vae.*`."""
    import torch
    from backend.diffusion_engine.base import ForgeObjects
    from backend.patcher.base import ModelPatcher, UnetPatcher
    from backend.patcher.clip import CLIP
    from double_models import Node, build_tree
    guess = FluxGuess()
    unet = Node()
    build_tree({k[len("model."):]: v for k, v in state.items() if k.startswith("model.diffusion_model.")}, unet)
    unet.storage_dtype = torch.bfloat16
    unet.computation_dtype = torch.float32
    te = build_tree(guess.process_clip_state_dict(state))
    vae = build_tree({k[len("vae."):]: v for k, v in state.items() if k.startswith("vae.")})
    return Flux(guess, ForgeObjects(UnetPatcher(unet), CLIP(te), ModelPatcher(vae)))


def preprocess_state_dict(sd):
    if not any(k.startswith("model.diffusion_model") for k in sd.keys()):
        sd = {f"model.diffusion_model.{k}": v for k, v in sd.items()}
    return sd


def replace_state_dict(sd, asd, path):
    if "decoder.conv_in.weight" in asd:
        for k in [k for k in sd if k.startswith("first_stage_model.")]:
            del sd[k]
        for k, v in asd.items():
            sd["first_stage_model." + k] = v
    return sd


def split_state_dict(sd, additional_state_dicts=None):
    sd, metadata = load_torch_file(sd, return_metadata=True)
    sd = preprocess_state_dict(sd)
    if FLUX_KEY not in sd and "model.diffusion_model.input_blocks.0.0.weight" not in sd:
        raise KeyError("no architecture matches")  # huggingface_guess.guess finds nothing
    for asd in additional_state_dicts or []:
        sd = replace_state_dict(sd, load_torch_file(asd), asd)
    return sd


def forge_loader(sd, additional_state_dicts=None):
    try:
        state = split_state_dict(sd, additional_state_dicts=additional_state_dicts)
    except Exception:
        raise ValueError("Failed to recognize model type!")
    backend.args.dynamic_args["kontext"] = "kontext" in str(sd).lower()
    backend.args.dynamic_args["edit"] = "qwen" in str(sd).lower() and "edit" in str(sd).lower()
    engine = _flux_engine(state) if FLUX_KEY in state else build_engine(state, StableDiffusion, StableDiffusionXL)
    yaml = os.path.splitext(sd)[0] + ".yaml"
    engine.prediction_from_yaml = os.path.isfile(yaml)
    return engine
