"""backend/diffusion_engine/base.py: the engine and its ForgeObjects."""
import copy


class ForgeObjects:
    def __init__(self, unet, clip, vae, clipvision=None):
        self.unet, self.clip, self.vae, self.clipvision = unet, clip, vae, clipvision

    def shallow_copy(self):
        return ForgeObjects(self.unet, self.clip, self.vae, self.clipvision)


class ForgeDiffusionEngine:
    matched_guesses = []

    def __init__(self, estimated_config, forge_objects):
        self.model_config = estimated_config
        self.forge_objects = forge_objects
        self.forge_objects_original = forge_objects.shallow_copy()
        self.forge_objects_after_applying_lora = forge_objects.shallow_copy()
        self.current_lora_hash = str([])
        self.is_sd1 = self.is_sd2 = self.is_sdxl = self.is_sd3 = False
        self.extra_generation_params = {}
        self.comments = []


class StableDiffusion(ForgeDiffusionEngine):
    def __init__(self, *a):
        super().__init__(*a)
        self.is_sd1 = True


class StableDiffusionXL(ForgeDiffusionEngine):
    def __init__(self, *a):
        super().__init__(*a)
        self.is_sdxl = True


_ = copy
