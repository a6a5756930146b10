from backend.diffusion_engine.base import ForgeDiffusionEngine


class StableDiffusionXL(ForgeDiffusionEngine):
    def __init__(self, *a):
        super().__init__(*a)
        self.is_sdxl = True
