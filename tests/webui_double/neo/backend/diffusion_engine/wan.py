"""Neo-only engine (present at 283cb2c4); lllyasviel Forge has no backend/diffusion_engine/wan.py."""
from backend.diffusion_engine.base import ForgeDiffusionEngine


class Wan(ForgeDiffusionEngine):
    pass
