"""Entry files, detection, callbacks and settings: how the webui loads and wires BlockMerge."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types

import pytest

from tests.webui_double.fixtures import a1111_fixture, forge_fixture, webui_fixture  # noqa: F401  (fixtures)
from tests.webui_double.harness import EXT_ROOT, ROOTS, Webui

SCRIPTS = sorted(f for f in os.listdir(os.path.join(EXT_ROOT, "scripts")) if f.endswith(".py"))


@pytest.mark.parametrize("flavor", ["a1111", "forge", "neo"])
def test_each_script_file_loads_the_way_the_webui_loads_it(flavor, tmp_path):
    """In a fresh interpreter whose sys.path does not hold the extension: the root is prepended only
    while each file is imported, the module is named after the file and is not in sys.modules."""
    code = textwrap.dedent(f"""
        import json, os, sys
        ext = {EXT_ROOT!r}
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != ext]
        sys.path[:0] = {ROOTS[flavor]!r}
        from modules import scripts, script_callbacks
        import lora_script; lora_script.install()
        before = list(sys.path)
        out = {{"files": [], "path_restored": True}}
        for f in {SCRIPTS!r}:
            module = scripts.load_script_file(ext, os.path.join(ext, "scripts", f))
            out["files"].append([f, module.__name__, module.__name__ in sys.modules])
            out["path_restored"] &= sys.path == before
        out["lib_merge"] = sys.modules["lib_merge"].__file__
        out["classes"] = [(d.script_class.__name__, os.path.basename(d.path)) for d in scripts.scripts_data]
        # "Reload custom script bodies": the files run again, callbacks are not cleared
        scripts.load_script_file(ext, os.path.join(ext, "scripts", "lora_block_weight.py"))
        scripts.load_script_file(ext, os.path.join(ext, "scripts", "blockmerge_tab.py"))
        scripts.load_script_file(ext, os.path.join(ext, "scripts", "blockmerge_api.py"))
        out["callbacks"] = {{k: len(v) for k, v in script_callbacks.callback_map.items()}}
        print(json.dumps(out))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["WEBUI_DOUBLE_DATA"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["files"] == [[f, f, False] for f in SCRIPTS]
    assert out["path_restored"]
    assert out["lib_merge"] == os.path.join(EXT_ROOT, "lib_merge", "__init__.py")
    # the two AlwaysVisible scripts: the merged model's identity (no UI) and LoRA block weights
    assert out["classes"] == [["BlockMergeModelIdentity", "blockmerge_tab.py"],
                              ["LoraBlockWeightScript", "lora_block_weight.py"]]
    cb = out["callbacks"]
    assert cb["callbacks_cfg_denoiser"] == 1 and cb["callbacks_script_unloaded"] == 1
    assert cb["callbacks_infotext_pasted"] == 1
    assert cb["callbacks_ui_tabs"] == 1 and cb["callbacks_ui_settings"] == 1 and cb["callbacks_app_started"] == 1
    assert cb["callbacks_model_loaded"] == (2 if flavor == "a1111" else 1)  # ours once (+ A1111's builtin Lora)


def test_detection(tmp_path):
    from lib_merge.webui import detect
    detect.detect.cache_clear()
    assert detect.detect().kind is detect.Kind.NONE
    for flavor in ("a1111", "forge", "neo"):  # Neo in detail: tests/test_webui_neo.py
        with Webui(flavor, tmp_path / flavor):
            from lib_merge.webui import detect  # the harness gives every test fresh lib_merge.webui modules
            w = detect.detect()
            assert w.kind.value == flavor and w.supported and detect.is_forge() == (flavor != "a1111")
            assert detect.detect() is w  # decided once
    from lib_merge.webui import detect
    legacy = tmp_path / "legacy"
    (legacy / "modules_forge").mkdir(parents=True)
    (legacy / "modules_forge" / "__init__.py").write_text("")
    sys.path.insert(0, str(legacy))
    try:
        detect.detect.cache_clear()
        assert detect.detect().kind is detect.Kind.FORGE_LEGACY and not detect.detect().supported
    finally:
        sys.path.remove(str(legacy))
        sys.modules.pop("modules_forge", None)
        detect.detect.cache_clear()
    assert "modules" not in sys.modules


def test_unsupported_webui_gives_a_clear_error(tmp_path):
    from lib_merge.errors import MergeError
    from lib_merge.webui import detect
    from lib_merge.webui.host import WebuiHost
    detect.detect.cache_clear()
    with pytest.raises(MergeError, match="cannot drive no webui"):
        WebuiHost()


def test_settings_go_into_one_section(webui, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", types.SimpleNamespace(Dropdown="Dropdown"))
    webui.load_scripts()
    webui.script_callbacks.ui_settings_callback()
    labels = webui.shared.opts.data_labels
    ours = {k: v for k, v in labels.items() if k.startswith("blockmerge_")}
    assert set(ours) == {"blockmerge_data_dir", "blockmerge_lbw_presets", "blockmerge_lbwe_presets",
                         "blockmerge_default_dtype", "blockmerge_lbw_keep_in_memory"}
    assert {v.section for v in ours.values()} == {("blockmerge", "BlockMerge")}
    assert ours["blockmerge_default_dtype"].component == "Dropdown"
    from lib_merge.webui import settings
    assert settings.data_dir() == os.path.join(webui.tmp, "blockmerge")
    assert settings.lbw_presets_path() == os.path.join(webui.tmp, "blockmerge", "lbw_presets.txt")
    webui.shared.opts.data["blockmerge_data_dir"] = str(webui.tmp)
    assert settings.lbwe_presets_path() == os.path.join(webui.tmp, "lbwe_presets.txt")
    from lib_merge.webui.host import WebuiHost
    assert WebuiHost().default_dtype() == "fp16"


def test_model_change_drops_caches(a1111):
    a1111.add_checkpoint("A.safetensors", seed=1)
    a1111.load_scripts()
    from lib_merge.webui import lbw_runtime
    rt = lbw_runtime.runtime()
    rt.applier._ratios[("x",)] = ({}, None)
    a1111.load("A.safetensors")  # model_loaded callbacks
    assert rt.applier._ratios == {}
