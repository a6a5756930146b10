"""backend/diffusion_engine/flux.py of Neo (283cb2c4): `Flux` sets `is_flux = True` (so does chroma.py)."""
from backend.diffusion_engine.base import ForgeDiffusionEngine


class Flux(ForgeDiffusionEngine):
    def __init__(self, *a):
        super().__init__(*a)
        self.is_flux = True
        self.use_distilled_cfg_scale = True
