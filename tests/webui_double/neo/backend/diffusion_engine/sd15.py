from backend.diffusion_engine.base import ForgeDiffusionEngine


class StableDiffusion(ForgeDiffusionEngine):
    def __init__(self, *a):
        super().__init__(*a)
        self.is_sd1 = True
