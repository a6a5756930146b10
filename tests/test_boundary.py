"""The core must import without the webui and without gradio (STYLE.md)."""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CORE = ["lib_merge", "lib_merge.cli", "lib_merge.merge.engine", "lib_merge.merge.plan", "lib_merge.merge.replay",
        "lib_merge.merge.inspect", "lib_merge.methods", "lib_merge.arch", "lib_merge.io"]


def test_core_leaves_webui_and_gradio_out():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in CORE) +
            "from lib_merge.cli import build_parser\nbuild_parser()\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('modules', 'modules_forge', 'gradio'))\n"
            "assert not bad, bad\nprint('clean')\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "clean"
