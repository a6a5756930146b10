"""extensions-builtin/xyz/scripts/xyz_grid.py of Forge Neo (the layout of Haoming02's newer tree:
lib_xyz/builtins.py ee9b6658 in the code index, the same layout as branch classic 1f95d717):
the script imports `AxisOption` and `SharedSettingsStackHelper` from `lib_xyz.classes` and sets
`axis_options = builtins.builtin_options`, a list that lives in the `lib_xyz` package, so it survives a
UI reload (lib_xyz stays in sys.modules) where A1111's and Forge's list is made afresh.
(At 283cb2c4 Neo still had scripts/xyz_grid.py at the root; either way the webui names the module
"xyz_grid.py", which is how BlockMerge finds it.)

The plot's loop is the A1111/Forge double's (builtin_scripts/xyz_grid.py, run here in this module's
namespace); what Neo changes is the classes, the list and the settings helper."""
import os

_LOOP = os.path.join(os.path.dirname(__file__), *[os.pardir] * 4, "builtin_scripts", "xyz_grid.py")
with open(_LOOP, encoding="utf-8") as _f:
    exec(compile(_f.read(), os.path.abspath(_LOOP), "exec"))  # noqa: S102 - the shared loop of the double

from lib_xyz import builtins  # noqa: E402
from lib_xyz.classes import AxisOption, AxisOptionImg2Img, AxisOptionTxt2Img, SharedSettingsStackHelper  # noqa: E402,F401,F811

axis_options = builtins.builtin_options
