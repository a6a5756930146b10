"""The webui's install hook. It installs nothing: everything BlockMerge needs ships with the webui.

It only checks, and tells the user plainly if something is missing, instead of pip-installing at
start-up (which breaks webuis in the field).
"""
import importlib.util

_missing = [m for m in ("torch", "safetensors", "numpy", "scipy", "tqdm") if importlib.util.find_spec(m) is None]
if _missing:
    print(f"[BlockMerge] missing Python packages: {', '.join(_missing)}. "
          f"Install them into the webui's environment (pip install {' '.join(_missing)}).")
