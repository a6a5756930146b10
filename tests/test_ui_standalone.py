"""The standalone host and `python -m lib_merge ui`, and what lib_merge/ui may import (no gradio needed)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from lib_merge.cli import build_parser, main
from lib_merge.errors import MergeError
from lib_merge.ui.host import GenSettings
from lib_merge.ui.standalone import LOCALHOST, StandaloneHost

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UI = os.path.join(ROOT, "lib_merge", "ui")
TAB_MODULES = ("merge_tab", "events", "compat", "standalone", "form", "mbw", "history", "state", "actions",
               "recipes", "labels")


def test_lists_models_recursively_and_resolves_names(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ("b.safetensors", "A.ckpt", "sub/c.SAFETENSORS", ".hidden/x.safetensors", "notes.txt",
                 ".m.safetensors.123.partial", ".tmp.safetensors"):
        (tmp_path / name).write_bytes(b"")
    host = StandaloneHost(str(tmp_path))
    assert host.checkpoints() == ["A.ckpt", "b.safetensors", "sub/c.SAFETENSORS"]
    assert host.checkpoint_path("sub/c.SAFETENSORS") == str(tmp_path / "sub" / "c.SAFETENSORS")
    assert host.output_dir() == str(tmp_path) and not host.can_load and not host.can_generate
    (tmp_path / "new.safetensors").write_bytes(b"")
    assert "new.safetensors" not in host.checkpoints()
    host.refresh()
    assert "new.safetensors" in host.checkpoints()


def test_names_outside_the_folder_and_gone_files(tmp_path):
    host = StandaloneHost(str(tmp_path))
    with pytest.raises(MergeError, match="outside the models folder"):
        host.checkpoint_path("../etc/passwd")
    with pytest.raises(MergeError, match="is gone"):
        host.checkpoint_path("nope.safetensors")
    for call in (lambda: host.load_state_dict({}, "A", "x"), host.restore, lambda: host.generate(GenSettings())):
        with pytest.raises(MergeError):
            call()


def test_folders_must_exist(tmp_path):
    with pytest.raises(MergeError, match="models folder .* does not exist"):
        StandaloneHost(str(tmp_path / "nope"))
    with pytest.raises(MergeError, match="output folder .* does not exist"):
        StandaloneHost(str(tmp_path), str(tmp_path / "nope"))
    assert StandaloneHost(str(tmp_path), str(tmp_path)).output_dir() == str(tmp_path)


def test_ui_command_line():
    args = build_parser().parse_args(["ui", "--models-dir", "m"])
    assert (args.models_dir, args.port, args.output_dir, args.data_dir) == ("m", 7870, None, None)
    assert LOCALHOST == "127.0.0.1"


def test_ui_command_reports_a_bad_folder_without_traceback(tmp_path, capsys):
    pytest.importorskip("gradio")
    code = main(["ui", "--models-dir", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert code == 2 and "models folder" in err and "Traceback" not in err


def test_plain_ui_modules_import_neither_gradio_nor_the_webui():
    code = ("import sys\n"
            "import lib_merge.ui.actions, lib_merge.ui.recipes, lib_merge.ui.mbw, lib_merge.ui.form, "
            "lib_merge.ui.history, lib_merge.ui.state, lib_merge.ui.labels, lib_merge.ui.standalone\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('gradio', 'modules', 'modules_forge'))\n"
            "assert not bad, bad\nprint('clean')\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "clean", r.stderr


def _source(name: str) -> str:
    with open(os.path.join(UI, name + ".py"), encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize("name", TAB_MODULES)
def test_sources_stay_portable_across_gradio_3_and_4(name):
    src = _source(name)
    assert ".style(" not in src  # removed in gradio 4
    assert not re.search(r"^\s*(import modules|from modules)", src, re.M)  # the webui stays in lib_merge/webui
    if name != "compat":
        assert not re.search(r"\b_?js=", src), "pick _js / js through compat.js()"
        assert "gr.Dropdown.update" not in src and ".update(" not in src.replace("gr.update(", "")
    assert not re.search(r"class \w+\((gr|gradio)\.", src)  # no custom gradio Component subclasses
