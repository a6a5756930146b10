"""modules/sd_hijack.py: the hijack wraps the text encoder, so its parameters are named `.wrapped.`
(A1111: FrozenCLIPEmbedderWithCustomWords / ...ForSDXLWithCustomWords keep the original in `.wrapped`)."""
import importlib.util

import torch

if importlib.util.find_spec("modules_forge") is not None \
        and importlib.util.find_spec("modules_forge.forge_version") is not None:
    raise ImportError("No module named 'modules.sd_hijack' (Forge Neo removed it: SuperMerger #473)")


class EmbedderWrapper(torch.nn.Module):
    def __init__(self, wrapped):
        super().__init__()
        self.wrapped = wrapped


class ModelHijack:
    def __init__(self):
        self.calls = []

    def hijack(self, m):
        self.calls.append("hijack")
        if getattr(m, "is_sdxl", False):
            embedders = m.conditioner.embedders
            for i in range(len(embedders)):
                if not isinstance(embedders[i], EmbedderWrapper):
                    embedders[i] = EmbedderWrapper(embedders[i])
        elif not isinstance(m.cond_stage_model, EmbedderWrapper):
            m.cond_stage_model = EmbedderWrapper(m.cond_stage_model)

    def undo_hijack(self, m):
        self.calls.append("undo_hijack")
        if getattr(m, "is_sdxl", False):
            embedders = m.conditioner.embedders
            for i in range(len(embedders)):
                if isinstance(embedders[i], EmbedderWrapper):
                    embedders[i] = embedders[i].wrapped
        elif isinstance(m.cond_stage_model, EmbedderWrapper):
            m.cond_stage_model = m.cond_stage_model.wrapped


model_hijack = ModelHijack()
