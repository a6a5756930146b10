"""backend/patcher/clip.py: CLIP wraps the JointTextEncoder and its ModelPatcher."""
from backend.patcher.base import ModelPatcher


class CLIP:
    def __init__(self, model=None, no_init=False):
        if no_init:
            return
        self.cond_stage_model = model
        self.tokenizer = None
        self.patcher = ModelPatcher(self.cond_stage_model)

    def clone(self):
        n = CLIP(no_init=True)
        n.patcher = self.patcher.clone()
        n.cond_stage_model = self.cond_stage_model
        n.tokenizer = self.tokenizer
        return n

    def add_patches(self, *args, **kwargs):
        return self.patcher.add_patches(*args, **kwargs)
