"""backend/diffusion_engine/base.py of Neo (283cb2c4): `fix_for_webui_backward_compatibility` sets
`is_sd1`, `is_sdxl`, `is_flux` ("affects the usage of TAESD") and `is_wan`, all False; each engine
sets its own (sd15: is_sd1, sdxl: is_sdxl, flux and chroma: is_flux, wan: is_wan). No is_sd2 / is_sd3:
SD2 and SD3 are not in Neo."""


class ForgeObjects:
    def __init__(self, unet, clip, vae, clipvision=None):
        self.unet, self.clip, self.vae, self.clipvision = unet, clip, vae, clipvision

    def shallow_copy(self):
        return ForgeObjects(self.unet, self.clip, self.vae, self.clipvision)


class ForgeDiffusionEngine:
    matched_guesses = []

    def __init__(self, estimated_config, forge_objects):
        self.model_config = estimated_config
        self.current_lora_hash = str([])
        self.fix_for_webui_backward_compatibility()
        self.forge_objects = forge_objects
        self.forge_objects_original = forge_objects.shallow_copy()
        self.forge_objects_after_applying_lora = forge_objects.shallow_copy()
        self.extra_generation_params = {}
        self.comments = []

    def fix_for_webui_backward_compatibility(self):
        self.use_distilled_cfg_scale = False
        self.is_sd1 = False
        self.is_sdxl = False
        self.is_flux = False
        self.is_wan = False

    def is_webui_legacy_model(self):
        return self.is_sd1 or self.is_sdxl
