"""The "Merge alpha" / "Merge MBW" axes in the webui's own X/Y/Z plot, against the webui double
(tests/webui_double/builtin_scripts/xyz_grid.py runs them as A1111 1.10 and Forge do)."""
from __future__ import annotations

import os
import sys
import types

import pytest
import torch
from PIL import Image

from lib_merge.errors import MergeError, ParseError
from lib_merge.ui.form import FormValues
from lib_merge.ui.history import History
from tests.webui_double.fixtures import a1111_fixture, forge_fixture, webui_fixture  # noqa: F401  (fixtures)
from tests.webui_double.xyz import load_xyz, run_xyz

KEY = "model.diffusion_model.out.2.weight"
SD1_MBW = ",".join(["0"] * 13 + ["1"] * 13)


def labels(xyz) -> list[str]:
    return [o.label for o in xyz.axis_options]


def setup(w, **form):
    """Two checkpoints, A loaded, the scripts loaded as the webui loads them, the merge tab's last merge
    in its history, the X/Y/Z script loaded and the before-UI callbacks run. Captures, for every cell,
    the live UNet weight of KEY when the cell renders."""
    a = w.add_checkpoint("A.safetensors", seed=1)
    b = w.add_checkpoint("B.safetensors", seed=2)
    w.load("A.safetensors")
    w.load_scripts()
    from lib_merge.webui import settings
    History(settings.data_dir()).add("load", FormValues(model_a="A.safetensors", model_b="B.safetensors",
                                                        **form), None)
    seen = []
    real = w.processing.process_images

    def process_images(p):
        seen.append((p, live(w)[KEY].clone()))
        return real(p)
    w.processing.process_images = process_images  # before xyz_grid.py imports it
    xyz = load_xyz(w)
    w.script_callbacks.before_ui_callback()
    return a, b, seen, xyz


def live(w) -> dict[str, torch.Tensor]:
    m = w.shared.sd_model
    if w.is_forge:
        return {"model." + k: v for k, v in m.forge_objects.unet.model.state_dict().items()}
    return {"model.diffusion_model." + k: v for k, v in m.model.diffusion_model.state_dict().items()}


def mix(w, alpha, **kw):
    """KEY of the tab's merge of A and B at this alpha (the engine's own arithmetic)."""
    from lib_merge.merge.engine import merge
    from lib_merge.merge.recipe import Recipe
    paths = tuple(w.sd_models.get_closet_checkpoint_match(n).filename for n in ("A.safetensors", "B.safetensors"))
    return merge(Recipe(models=paths, alpha=alpha, **kw), None, hash_models=False).state_dict[KEY]


def test_axes_are_registered_once_across_reloads(webui):
    webui.add_checkpoint("A.safetensors", seed=1)
    webui.load_scripts()
    xyz = load_xyz(webui)
    webui.script_callbacks.before_ui_callback()
    webui.script_callbacks.before_ui_callback()  # a second UI build without reloading the scripts
    assert labels(xyz).count("Merge alpha") == 1 and labels(xyz).count("Merge MBW") == 1
    alpha, mbw = (next(o for o in xyz.axis_options if o.label == n) for n in ("Merge alpha", "Merge MBW"))
    assert alpha.type is float and mbw.type is str and 0.9 <= alpha.cost < 1 and 0.9 <= mbw.cost < 1
    assert alpha.cost != mbw.cost and mbw.prepare is not None
    # "Reload custom script bodies": our entry file runs again; the callback stays one
    webui.scripts.load_script_file(webui.scripts.scripts_data[0].basedir,
                                   os.path.join(webui.scripts.scripts_data[0].basedir, "scripts", "blockmerge_tab.py"))
    ours = [c for c in webui.script_callbacks.callback_map["callbacks_before_ui"] if c.script.endswith("xyz_merge.py")
            or getattr(c.callback, "__module__", "") == "lib_merge.webui.xyz_merge"]
    assert len(ours) == 1
    # a full reload: xyz_grid.py runs again with a fresh list, and the axes are added to that one
    webui.scripts.scripts_data.clear()
    fresh = load_xyz(webui)
    # Neo keeps the list in lib_xyz (builtins.builtin_options), which a reload does not re-import:
    # the axes are still there and must not be added twice
    assert ("Merge alpha" in labels(fresh)) == (webui.flavor == "neo")
    webui.script_callbacks.before_ui_callback()
    assert labels(fresh).count("Merge alpha") == 1 and labels(fresh).count("Merge MBW") == 1
    assert labels(fresh)[:5] == labels(xyz)[:5]  # the webui's own options come first, untouched


def test_no_xyz_script_is_not_an_error(webui):
    webui.load_scripts()
    webui.script_callbacks.before_ui_callback()
    assert not webui.errors.reported


def test_merge_alpha_loads_each_merge_once_and_restores_afterwards(webui):
    a, b, seen, xyz = setup(webui, alpha=0.5)
    p, processed, script = run_xyz(webui, [("Merge alpha", "0, 0.25, 1"), ("Seed", "1, 2")], steps=1)
    assert script.values[0] == [0.0, 0.25, 1.0]
    assert [ix for ix, _, _ in script.order] == [0, 0, 1, 1, 2, 2]  # cost 0.9: the merge axis runs outermost
    session = p.blockmerge_xyz
    assert session.merges == 3  # one per value, not one per cell
    for (pc, w), (ix, iy, _) in zip(seen, script.order):
        assert torch.equal(w, mix(webui, [0.0, 0.25, 1.0][ix]).to(w.dtype)), (ix, iy)
        assert pc.seed == [1, 2][iy]
        assert pc.extra_generation_params["BlockMerge"] == f"XYZ: alpha {['0', '0.25', '1'][ix]}"
    assert "BlockMerge" not in p.extra_generation_params  # the plot's own p is untouched
    assert len(processed.images) == 6 and all(processed.images)
    # after the plot: the buffer is freed and the selected checkpoint comes back
    assert len(session.buffer) == 0 and session.loaded is None
    if webui.flavor == "a1111":
        assert ("reload_model_weights", "A.safetensors", True) in webui.sd_models.calls
        assert torch.equal(live(webui)[KEY], a[KEY].to(live(webui)[KEY].dtype))
    else:
        assert webui.sd_models.model_data.forge_hash == ""  # the next generation reloads A from its file
        p2, _ = webui.txt2img("a cat", script=False, steps=1)
        assert torch.equal(live(webui)[KEY], a[KEY].to(live(webui)[KEY].dtype))
    assert not webui.errors.reported


def test_merge_mbw_values_with_commas_survive_prepare(webui):
    a, b, seen, xyz = setup(webui, alpha=0.5)
    mbw = next(o for o in xyz.axis_options if o.label == "Merge MBW")
    assert mbw.prepare(f'"{SD1_MBW}", GRAD_V') == [SD1_MBW, "GRAD_V"]
    assert mbw.prepare(SD1_MBW) == [SD1_MBW]  # one unquoted weight string is one value
    assert mbw.prepare(f"{SD1_MBW}\nGRAD_A\n") == [SD1_MBW, "GRAD_A"]
    assert mbw.prepare("GRAD_V, GRAD_A") == ["GRAD_V", "GRAD_A"]
    assert mbw.format_value(None, mbw, SD1_MBW).startswith("Merge MBW: 0,0,0") and \
        len(mbw.format_value(None, mbw, SD1_MBW)) < 75
    p, _, script = run_xyz(webui, [("Merge MBW", f'"{SD1_MBW}", "{",".join(["1"] * 26)}"')], steps=1)
    assert script.values[0] == [SD1_MBW, ",".join(["1"] * 26)]
    assert p.blockmerge_xyz.merges == 2
    # OUT11 (the last block, where out.2 lives) is 1 in both strings: the cells carry B's weights there
    assert all(torch.equal(w, b[KEY].to(w.dtype)) for _, w in seen)


def test_two_merge_axes_merge_once_per_combination(webui):
    a, b, seen, xyz = setup(webui)
    p, _, script = run_xyz(webui, [("Merge alpha", "0, 1"), ("Merge MBW", f'"{SD1_MBW}", GRAD_V'),
                                   ("Seed", "1, 2")], steps=1)
    assert len(script.order) == 8 and p.blockmerge_xyz.merges == 4  # not 8 (once per seed) nor 12
    assert [(ix, iy) for ix, iy, _ in script.order[:2]] == [(0, 0), (0, 0)]  # the seed axis runs innermost


def test_bad_values_stop_the_plot_before_the_first_cell(webui):
    a, b, seen, xyz = setup(webui)
    with pytest.raises(ParseError, match="Merge MBW 1,2,3.*3 values"):
        run_xyz(webui, [("Merge alpha", "0, 1"), ("Merge MBW", '"1,2,3"')], steps=1)
    assert seen == []


def test_without_a_recipe_the_axes_say_what_to_do(webui):
    webui.add_checkpoint("A.safetensors", seed=1)
    webui.load("A.safetensors")
    webui.load_scripts()
    load_xyz(webui)
    webui.script_callbacks.before_ui_callback()
    with pytest.raises(MergeError, match="merge once in the Block Merge tab"):
        run_xyz(webui, [("Merge alpha", "0, 1")], steps=1)


def test_interrupt_during_the_plot(webui):
    a, b, seen, xyz = setup(webui, alpha=0.5)
    real = webui.processing.process_images

    def interrupting(p):
        webui.shared.state.interrupt()  # the user presses Interrupt during the first cell
        return real(p)
    xyz.process_images = interrupting
    p, processed, script = run_xyz(webui, [("Merge alpha", "0, 1"), ("Seed", "1, 2")], steps=1)
    assert len(script.order) == 1 and p.blockmerge_xyz.merges == 1
    assert p.blockmerge_xyz.loaded is None  # restored all the same


def test_save_grid_goes_through_the_webuis_grid_saving(webui, monkeypatch):
    saved = []
    stub = types.SimpleNamespace(save_image=lambda image, path, basename, **kw: saved.append((path, basename, kw))
                                 or (os.path.join(path, basename + ".png"), None))
    monkeypatch.setitem(sys.modules, "modules.images", stub)
    monkeypatch.setattr(sys.modules["modules"], "images", stub, raising=False)
    from lib_merge.webui.grids import save_grid
    img = Image.new("RGB", (4, 4))
    assert save_grid(img, "recipe") == os.path.join("out/grids", "blockmerge_xy.png")
    assert saved[0][0] == "out/grids" and saved[0][2]["grid"] is True and saved[0][2]["info"] == "recipe"
    webui.shared.opts.data["grid_save"] = False
    assert save_grid(img, "recipe") is None and len(saved) == 1
