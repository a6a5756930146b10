"""The merge tab's "XY plot" accordion under whatever gradio is installed (.ci/ui_check.sh runs it under
3.41.2 and 4.40.0): it builds, hides itself where the host cannot generate, and its handlers run a
plot (tiny checkpoints, the real engine, a fake host) and stop one."""
from __future__ import annotations

import shutil

import pytest

gr = pytest.importorskip("gradio")

from lib_merge.ui.form import FormValues  # noqa: E402
from lib_merge.ui.merge_tab import render_merge_tab  # noqa: E402
from lib_merge.ui.standalone import StandaloneHost  # noqa: E402
from lib_merge.ui.state import TabState  # noqa: E402
from lib_merge.ui.xy_panel import HINTS, TYPE_LABELS  # noqa: E402
from lib_merge.xy import AxisKind  # noqa: E402
from tests.test_ui_xy_merge import FakeHost  # noqa: E402


@pytest.fixture
def models(tmp_path, sd1_models):
    d = tmp_path / "models"
    d.mkdir()
    for p, n in zip(sd1_models, "ABC"):
        shutil.copy(p, d / f"{n}.safetensors")
    return d


@pytest.fixture
def state(tmp_path):
    return TabState(data_dir=str(tmp_path / "data"))


class InterruptingHost(FakeHost):
    def __init__(self, folder):
        super().__init__(folder)
        self.interrupted = 0

    def interrupt(self):
        self.interrupted += 1


def build(host, state):
    with gr.Blocks(analytics_enabled=False) as demo:
        ui = render_merge_tab(host, state)
    return demo, ui


def by_elem_id(blocks):
    return {b.elem_id: b for b in blocks.blocks.values() if getattr(b, "elem_id", None)}


def test_hidden_where_the_host_cannot_generate(models, state):
    demo, ui = build(StandaloneHost(str(models)), state)
    ids = by_elem_id(demo)
    assert ids["blockmerge_xy"].visible is False
    assert {"blockmerge_xy_x_type", "blockmerge_xy_z_values", "blockmerge_xy_run", "blockmerge_xy_stop",
            "blockmerge_xy_gallery"} <= set(ids)


def test_builds_with_every_axis_type_and_wires_run_and_stop(models, state):
    host = InterruptingHost(models)
    demo, ui = build(host, state)
    ids = by_elem_id(demo)
    assert ids["blockmerge_xy"].visible is not False
    panel = ui.w["xy"]
    assert len(panel.types) == 3 and len(panel.values) == 3
    assert TYPE_LABELS[0] == "none" and len(TYPE_LABELS) == 17 and "effective elemental checker" in TYPE_LABELS
    assert [t.value for t in panel.types] == ["alpha", "seed", "none"]
    seen = [b.label for b in demo.blocks.values() if getattr(b, "label", None)]
    assert len(seen) == len(set(seen)), sorted(x for x in seen if seen.count(x) > 1)
    deps = demo.get_config_file()["dependencies"]

    def dep_of(component):
        return [d for d in deps if any(t == component._id or (isinstance(t, (list, tuple)) and t[0] == component._id)
                                       for t in d["targets"])]
    (run,) = dep_of(panel.w["run"])
    assert "blockmergeTxt2imgSettings" in (run.get("js") or "")  # the txt2img settings, as Merge and generate
    assert len(run["inputs"]) == 1 + len(ui.form_inputs) + 9
    (stop,) = dep_of(panel.w["stop"])
    assert stop["queue"] is False


def test_run_handler_draws_and_saves_the_grid(models, state):
    host = InterruptingHost(models)
    demo, ui = build(host, state)
    xh = ui.w["xy"].w["handlers"]
    form = FormValues(model_a="A.safetensors", model_b="B.safetensors").to_ui()
    calls = []
    status, images = xh.run(lambda frac, desc=None: calls.append((frac, desc)), '{"seed": 3, "prompt": "a cat"}',
                            *form, "alpha", "0, 1", "seed", "1, 2", "none", "", 20, "black", True)
    assert status.startswith("✓ XY plot done — 4 images, 2 merges") and "blockmerge_xy-00001.png" in status
    assert len(images) == 1 and images[0].size[0] > 16
    assert host.restored == 1 and calls and all(0 <= f <= 1 for f, _ in calls)
    status, gallery = xh.run(lambda *a, **k: None, "{}", *form, "alpha", "0, x", "none", "", "none", "", 20,
                             "black", True)
    assert status.startswith("✗") and "X axis" in status and gallery == gr.update()
    status, _ = xh.run(lambda *a, **k: None, "{}", *form, "alpha", "0", "none", "", "none", "", 20, "no-colour", True)
    assert status.startswith("✗") and "colour" in status


def test_stop_handler(models, state):
    host = InterruptingHost(models)
    demo, ui = build(host, state)
    xh = ui.w["xy"].w["handlers"]
    assert xh.stop() == "Nothing is running." and host.interrupted == 0
    with state.running() as token:
        assert xh.stop().startswith("■ Stopping") and token.cancelled and host.interrupted == 1


def test_type_change_gives_the_values_box_a_hint():
    from lib_merge.ui.xy_panel import XYHandlers
    up = XYHandlers.hint("effective elemental checker")
    assert up["placeholder"] == HINTS[AxisKind.EFFECTIVE_ELEMENTAL]
    assert XYHandlers.hint("nonsense") == gr.update()
