"""Neo-only engine (present at 283cb2c4); lllyasviel Forge has no backend/diffusion_engine/lumina.py."""
from backend.diffusion_engine.base import ForgeDiffusionEngine


class Lumina2(ForgeDiffusionEngine):
    pass
