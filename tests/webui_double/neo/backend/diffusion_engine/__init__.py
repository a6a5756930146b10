"""backend/diffusion_engine: the Forge double's package plus Neo's own engines (extend_path)."""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
