"""Fake modules_forge of Forge Neo: the Forge double's package (main_entry) plus Neo's own files.

Neo's sources this double follows (Haoming02/sd-webui-forge-classic, branch neo): the whole tree at
283cb2c4 (2025-11-29, read in the ivanuser/stable-diffusion-webui-Nukem fork, whose neo branch holds it
unchanged), and single newer files from the code index where noted in each file."""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
