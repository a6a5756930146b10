"""`merge --help` and input mistakes answer without importing torch (checked in sys.modules of a
fresh interpreter, not by timing)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PROBE = """
import sys, runpy
sys.argv = ["lib_merge"] + sys.argv[1:]
import lib_merge.cli as cli
code = cli.main()
print("EXIT", code)
print("TORCH", "torch" in sys.modules)
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def _probe(*args: str) -> tuple[str, str, bool]:
    r = _run(*args)
    lines = r.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("TORCH"), r.stdout + r.stderr
    return r.stdout, r.stderr, lines[-1] == "TORCH True"


def test_merge_help_does_not_import_torch():
    r = _run("merge", "--help")  # argparse exits inside main: the probe below checks sys.modules
    assert r.returncode == 0 and "--dtype" in r.stdout
    probe = ("import sys\nsys.argv=['lib_merge','merge','--help']\nimport lib_merge.cli as cli\n"
             "try:\n    cli.main()\nexcept SystemExit:\n    pass\nprint('TORCH', 'torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == "TORCH False", r.stdout + r.stderr


def test_cli_dtypes_match_the_recipe():
    from lib_merge.cli import DTYPES
    from lib_merge.merge.recipe import DTYPES as RECIPE_DTYPES
    assert tuple(DTYPES) == tuple(RECIPE_DTYPES)


@pytest.mark.parametrize("args, words", [
    (("merge", "/no/such/a.safetensors", "/no/such/b.safetensors", "-o", "OUT.safetensors"),
     "model file not found: /no/such/a.safetensors"),
    (("merge", "A.safetensors", "B.safetensors", "--calc", "self", "-o", "OUT.safetensors"),
     "--calc self uses model A only"),
])
def test_input_mistakes_do_not_import_torch(args, words):
    out, err, torch_loaded = _probe(*args)
    assert "EXIT 2" in out and words in err and "Fix:" in err and "Traceback" not in err
    assert not torch_loaded


def test_wrong_output_suffix_does_not_import_torch(tmp_path):
    a = tmp_path / "a.safetensors"
    a.write_bytes(b"\0" * 16)  # exists; the suffix check comes before any reading
    out, err, torch_loaded = _probe("merge", str(a), str(a), "-o", str(tmp_path / "out.bin"))
    assert "EXIT 2" in out and "does not end in .safetensors" in err
    assert not torch_loaded
