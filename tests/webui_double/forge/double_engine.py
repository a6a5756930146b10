"""The engine a Forge-style loader builds from a checkpoint's state dict, shared by the Forge and the
Neo doubles' backend/loader.py (whose entry points differ: see each loader).

The engine's components carry Forge's own names: the UNet (`KModel`) holds `diffusion_model` with
ldm names, the text encoders sit in a JointTextEncoder as `clip_l` / `clip_g` with transformers
names (what huggingface_guess' `process_clip_state_dict` makes of a checkpoint's keys).
"""
import re

import torch

from double_models import Node, build_tree

_RES = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
        "attn.out_proj": "self_attn.out_proj"}


def _open_clip_to_hf(sd, src, dst):
    out = {}
    for k, v in sd.items():
        if not k.startswith(src):
            continue
        rest = k[len(src):]
        m = re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)", rest)
        if m:
            i, tail = m.group(1), m.group(2)
            base = f"{dst}text_model.encoder.layers.{i}."
            if tail in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = tail.rsplit("_", 1)[1]
                for part, t in zip("qkv", v.chunk(3, 0)):
                    out[f"{base}self_attn.{part}_proj.{kind}"] = t.clone()
                continue
            for a, b in _RES.items():
                if tail.startswith(a + "."):
                    tail = b + tail[len(a):]
                    break
            out[base + tail] = v
        elif rest == "positional_embedding":
            out[f"{dst}text_model.embeddings.position_embedding.weight"] = v
        elif rest == "token_embedding.weight":
            out[f"{dst}text_model.embeddings.token_embedding.weight"] = v
        elif rest.startswith("ln_final."):
            out[f"{dst}text_model.final_layer_norm.{rest[len('ln_final.'):]}"] = v
        elif rest == "text_projection":
            out[f"{dst}text_projection.weight"] = v.transpose(0, 1).contiguous()
        elif rest == "logit_scale":
            out[dst[:-len("transformer.")] + "logit_scale"] = v
    return out


class Guess:
    """The huggingface_guess config object of the loaded engine (SD15 or SDXL)."""
    unet_key_prefix = ["model.diffusion_model."]
    vae_key_prefix = ["first_stage_model."]

    def __init__(self, xl):
        self.xl = xl
        self.text_encoder_key_prefix = ["conditioner.embedders."] if xl else ["cond_stage_model."]

    def process_clip_state_dict(self, state_dict):
        if self.xl:
            out = {"clip_l.transformer.text_model" + k[len("conditioner.embedders.0.transformer.text_model"):]: v
                   for k, v in state_dict.items() if k.startswith("conditioner.embedders.0.transformer.text_model")}
            out.update(_open_clip_to_hf(state_dict, "conditioner.embedders.1.model.", "clip_g.transformer."))
            return out
        return {"clip_l." + k[len("cond_stage_model."):]: v for k, v in state_dict.items() if k.startswith("cond_stage_model.")}




def build_engine(state, sd15_cls, sdxl_cls):
    """The engine for `state` (a dict the caller may no longer use: parts are moved out of it)."""
    from backend.diffusion_engine.base import ForgeObjects
    from backend.patcher.base import ModelPatcher, UnetPatcher
    from backend.patcher.clip import CLIP
    xl = any(k.startswith("conditioner.embedders.1.") for k in state)
    guess = Guess(xl)
    unet_model = Node()
    build_tree({k[len("model."):]: v for k, v in state.items() if k.startswith("model.diffusion_model.")}, unet_model)
    unet_model.storage_dtype = torch.float16
    unet_model.computation_dtype = torch.float32
    te = build_tree(guess.process_clip_state_dict({k: v for k, v in state.items() if k.startswith(("cond_stage_model.", "conditioner."))}))
    vae = build_tree({k[len("first_stage_model."):]: v for k, v in state.items() if k.startswith("first_stage_model.")})
    objects = ForgeObjects(UnetPatcher(unet_model), CLIP(te), ModelPatcher(vae))
    return (sdxl_cls if xl else sd15_cls)(guess, objects)
