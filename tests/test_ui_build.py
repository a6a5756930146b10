"""The Gradio tab under whatever gradio is installed (.ci/ui_check.sh runs this under 3.41.2 and 4.40.0):
it builds, hides what the host cannot do, keeps labels unique, and its handlers turn every
MergeError into a visible status line and a toast."""
from __future__ import annotations

import shutil

import pytest

gr = pytest.importorskip("gradio")

from lib_merge.errors import MergeError  # noqa: E402
from lib_merge.ui import compat, labels  # noqa: E402
from lib_merge.ui.events import Handlers, md_escape  # noqa: E402
from lib_merge.ui.form import FormValues  # noqa: E402
from lib_merge.ui.merge_tab import MergeTab, build_merge_tab, render_merge_tab  # noqa: E402
from lib_merge.ui.standalone import StandaloneHost, build_app  # noqa: E402
from lib_merge.ui.state import TabState  # noqa: E402



class WebuiLikeHost(StandaloneHost):
    name = "test"
    can_load = True
    can_generate = True


SD1_LABEL, XL_LABEL = labels.ARCH_LABELS["sd1"], labels.ARCH_LABELS["sdxl"]
ALPHA, BETA = labels.TARGET_LABELS["alpha"], labels.TARGET_LABELS["beta"]


@pytest.fixture
def models(tmp_path, sd1_models, sdxl_models):
    d = tmp_path / "models"
    (d / "xl").mkdir(parents=True)
    for p in sd1_models:
        shutil.copy(p, d)
    shutil.copy(sdxl_models[0], d / "xl" / "XL.safetensors")
    return d


@pytest.fixture
def state(tmp_path):
    return TabState(data_dir=str(tmp_path / "data"))


def build(host, state) -> tuple[gr.Blocks, MergeTab]:
    with gr.Blocks(analytics_enabled=False) as demo:
        ui = render_merge_tab(host, state)
    return demo, ui


def by_elem_id(blocks: gr.Blocks) -> dict:
    return {b.elem_id: b for b in blocks.blocks.values() if getattr(b, "elem_id", None)}


def test_builds_and_hides_what_standalone_cannot_do(models, state):
    tab = build_merge_tab(StandaloneHost(str(models)), state)
    assert isinstance(tab, gr.Blocks)
    ids = by_elem_id(tab)
    for shown in ("blockmerge_merge_save", "blockmerge_stop", "blockmerge_model_a", "blockmerge_mbw_OUT11",
                  "blockmerge_adjust_COL3", "blockmerge_history", "blockmerge_file_drop", "blockmerge_recipe"):
        assert ids[shown].visible, shown
    for hidden in ("blockmerge_merge_load", "blockmerge_merge_generate", "blockmerge_restore", "blockmerge_gallery"):
        assert not ids[hidden].visible, hidden
    assert ids["blockmerge_model_a"].choices and "xl/XL.safetensors" in str(ids["blockmerge_model_a"].choices)


def test_webui_like_host_shows_every_button(models, state):
    _, ui = build(WebuiLikeHost(str(models)), state)
    assert all(ui.w[k].visible for k in ("load", "generate", "restore", "gallery", "infotext"))


def test_labels_are_unique(models, state):
    """The webui keys ui-config.json by label: two equal labels in one tab confuse saved defaults."""
    demo, ui = build(StandaloneHost(str(models)), state)
    seen = [b.label for b in demo.blocks.values() if getattr(b, "label", None)]
    assert len(seen) == len(set(seen)), sorted(x for x in seen if seen.count(x) > 1)
    assert len(ui.sliders) == 26 + 61 and len(ui.adjust) == 8 and len(ui.form_inputs) == 30


def test_events_use_the_right_js_keyword_and_stop_skips_the_queue(models, state):
    demo, ui = build(WebuiLikeHost(str(models)), state)
    deps = demo.get_config_file()["dependencies"]
    with_js = [d for d in deps if d.get("js")]
    # "Merge and generate" and the XY plot's Run both read the txt2img settings in the browser
    assert len(with_js) == 2 and all("blockmergeTxt2imgSettings" in d["js"] for d in with_js)
    stop_id = ui.w["stop"]._id
    (stop,) = [d for d in deps if any(t == stop_id or (isinstance(t, (list, tuple)) and t[0] == stop_id)
                                      for t in d["targets"])]
    assert stop["queue"] is False
    assert compat.js("f") == ({"js": "f"} if compat.GRADIO4 else {"_js": "f"})


def test_standalone_page_builds(models, state):
    demo = build_app(StandaloneHost(str(models)), state)
    assert demo.analytics_enabled is False and "blockmerge" in (demo.css or "")


def value(update):
    return update.get("value") if isinstance(update, dict) else update


def test_block_weight_handlers(models, state):
    h = Handlers(StandaloneHost(str(models)), state)
    vals = [i / 100 for i in range(26)]
    text, beta, note = h.slider_released(SD1_LABEL, ALPHA, *vals, *[0.0] * 61)
    assert text == ",".join(format(v, "g") for v in vals) and value(beta) is None and "26 values" in note
    out = h.text_typed("alpha")(SD1_LABEL, ALPHA, "GRAD_V")
    assert [value(u) for u in out[:26]][:2] == [0.0, 1.0] and "preset GRAD\\_V" in out[87]
    assert all(value(u) is None for u in out[26:87])  # the Flux sliders stay as they are
    out = h.text_typed("beta")(SD1_LABEL, ALPHA, "GRAD_V")  # the sliders edit alpha: beta typing leaves them
    assert all(value(u) is None for u in out[:26])
    out = h.text_typed("alpha")(SD1_LABEL, ALPHA, "0,1,0.5,1,1")
    assert all(value(u) is None for u in out[:26]) and "has 5 values" in out[87]
    out = h.layout_changed(XL_LABEL, ALPHA, "", "")
    assert [u["visible"] for u in out[:26]].count(False) == 6 and not any(u["visible"] for u in out[26:87])
    a, b, *rest = h.preset_picked("GRAD_A", SD1_LABEL, BETA)
    assert value(a) is None and b == "GRAD_A" and value(rest[1]) == 0.0
    a, _, note = h.fill_random("U: uniform", XL_LABEL, ALPHA)
    assert a == ",".join(["U"] * 20) and "20 random" in note
    status, dd = h.save_preset("MINE", SD1_LABEL, ALPHA, "GRAD_V", "")
    assert status.startswith("✓ Preset MINE saved") and "MINE" in dd["choices"]


def test_detect_arch_and_calc(models, state):
    h = Handlers(StandaloneHost(str(models)), state)
    arch, note = h.detect_arch("xl/XL.safetensors")
    assert value(arch) == XL_LABEL and "SDXL" in note
    assert value(h.detect_arch("A.safetensors")[0]) == SD1_LABEL
    from tests.test_flux import _tiny
    from lib_merge.io.safetensors_io import save_tensors
    save_tensors(str(models / "flux.safetensors"), _tiny(1))
    h.host.refresh()
    arch, note = h.detect_arch("flux.safetensors")
    assert value(arch) is None and note.startswith("⚠ Model A is Flux.1") and "FLUXALL" in note
    assert value(h.calc_changed(labels.CALC_LABELS["train_difference"])) == labels.MODE_LABELS["add_difference"]
    assert value(h.calc_changed("Normal")) is None


def test_merge_handlers_show_errors_in_the_tab(models, state, monkeypatch):
    toasts = []
    monkeypatch.setattr(gr, "Warning", lambda msg, *a, **k: toasts.append(msg))
    h = Handlers(StandaloneHost(str(models)), state)
    progress = []
    form = FormValues(model_a="A.safetensors", model_b="B.safetensors", alpha_blocks="0,1,0.5,1,1")
    status, recipe, hist = h.merge_save(lambda f, desc=None: progress.append(f), *form.to_ui())
    assert status.startswith("✗ alpha block weights has 5 values") and "Fix:" in status
    assert toasts == [status[2:].replace("\\", "")] and value(recipe) is None
    status, recipe, hist = h.merge_save(lambda f, desc=None: progress.append(f), *form.replace(alpha_blocks="").to_ui())
    assert status.startswith("✓ Saved") and '"method": "weight_sum"' in recipe and len(hist["choices"]) == 1
    assert progress and progress[-1] == 1.0
    status, *_ = h.merge_generate(lambda f, desc=None: None, "{}", *form.to_ui())
    assert "cannot generate" in status and len(toasts) == 2
    assert h.stop() == "Nothing is running."


def test_guarded_handlers_and_bugs_stay_visible(models, state, monkeypatch, caplog):
    monkeypatch.setattr(gr, "Warning", lambda msg, *a, **k: None)
    h = Handlers(StandaloneHost(str(models)), state)
    summary, recipe, stored = h.guarded(h.file_picked, [object()] * 3)("gone.safetensors")
    assert summary.startswith("✗ model gone.safetensors is gone") and value(recipe) is None

    def bug():
        raise ZeroDivisionError("oops")
    status = h.guarded(lambda: [bug()], [object()])()  # one output: the value itself, never a one-item list
    assert "internal error (ZeroDivisionError: oops)" in status and "oops" in caplog.text


def test_history_and_file_handlers(models, state, monkeypatch):
    monkeypatch.setattr(gr, "Warning", lambda msg, *a, **k: None)
    h = Handlers(StandaloneHost(str(models)), state)
    form = FormValues(model_a="A.safetensors", model_b="B.safetensors", elemental="IN04::0", name="f")
    h.merge_save(lambda f, desc=None: None, *form.to_ui())
    (label,) = h.history_labels()
    assert '"elemental": "IN04::0"' in h.history_show(label)
    *values, status = h.history_load(label)
    assert FormValues.from_ui(values) == form and status.startswith("✓ Loaded past merge")
    h.host.refresh()
    summary, recipe, stored = h.file_picked("f.safetensors")
    assert "f.safetensors" in summary and stored["recipe"]["elemental"] == "IN04::0"
    *values, status = h.file_load(stored)
    assert FormValues.from_ui(values).elemental == "IN04::0"
    assert h.file_dropped(None) == ["", "", None]


def test_pasted_image_parameters_bring_the_recipe_back(models, state, monkeypatch):
    """What the webui writes for an image made from a merge in memory (a value with a comma or colon is
    JSON-quoted, infotext_utils.quote) loads the recipe into the form, as Merge and generate needs."""
    import json

    from safetensors import safe_open
    monkeypatch.setattr(gr, "Warning", lambda msg, *a, **k: None)
    h = Handlers(StandaloneHost(str(models)), state)
    form = FormValues(model_a="A.safetensors", model_b="B.safetensors", alpha=0.35, alpha_blocks="GRAD_V",
                      elemental="OUT05::0.5", name="p")
    h.merge_save(lambda f, desc=None: None, *form.to_ui())
    with safe_open(str(models / "p.safetensors"), "pt") as f:
        recipe = f.metadata()["sd_merge_recipe"]
    for value in (json.dumps(recipe), recipe):  # quoted as the webui writes it, or pasted raw
        text = f"a cat\nSteps: 2, Seed: 1, Model hash: 0123456789, Model: p, BlockMerge recipe: {value}, Version: v1"
        *values, status = h.paste_load(text)
        got = FormValues.from_ui(values)
        assert (got.model_a, got.model_b, got.alpha, got.elemental) == ("A.safetensors", "B.safetensors", 0.35,
                                                                          "OUT05::0.5")
        grad_v = [0.0] + [1 - i / 12 for i in range(12)] + [0.0] + [(i + 1) / 12 for i in range(12)]
        assert [float(v) for v in got.alpha_blocks.split(",")] == pytest.approx(grad_v)  # recorded expanded
        assert status.startswith("✓ Loaded the image")
    with pytest.raises(MergeError, match="no 'BlockMerge recipe'"):
        h.paste_load("Steps: 2, Model: A")


def test_md_escape():
    assert md_escape("ALL_B *x* <b>") == "ALL\\_B \\*x\\* \\<b\\>"


def test_file_path_values():
    class Temp:
        name = "/tmp/x.safetensors"
    assert compat.file_path("/a") == "/a" and compat.file_path(Temp()) == "/tmp/x.safetensors"
    assert compat.file_path({"path": "/p"}) == "/p" and compat.file_path(None) is None


# --- Flux.1: model A picks the 61-slider layout ----------------------------------------------------------

FLUX_LABEL = labels.ARCH_LABELS["flux"]


def test_flux_model_a_switches_to_61_sliders_that_follow_the_text(models, state):
    from tests.flux_synth import write_flux
    write_flux(models / "flux.safetensors", 1)
    h = Handlers(StandaloneHost(str(models)), state)
    arch, note = h.detect_arch("flux.safetensors")
    assert value(arch) == FLUX_LABEL and "Flux.1 dev" in note and "show its blocks" in note
    sd_row, flux_row = h.slider_rows(FLUX_LABEL)
    assert sd_row["visible"] is False and flux_row["visible"] is True
    assert [u["visible"] for u in h.slider_rows(XL_LABEL)] == [True, False]
    out = h.layout_changed(FLUX_LABEL, ALPHA, "FLUXALL", "")
    assert not any(u["visible"] for u in out[:26]) and all(u["visible"] for u in out[26:87])
    assert [value(u) for u in out[26:87]] == [1.0] * 61
    # sliders -> text -> sliders: slot i (CLIP, T5, IN, D00.., S00.., OUT) carries i/100
    vals = [0.0] * 26 + [i / 100 for i in range(61)]
    text, beta, note = h.slider_released(FLUX_LABEL, ALPHA, *vals)
    parts = text.split(",")
    assert len(parts) == 61 and parts[3 + 7] == "0.1" and parts[-1] == "0.6" and "61 values for Flux.1" in note
    out = h.text_typed("alpha")(FLUX_LABEL, ALPHA, text)
    assert [value(u) for u in out[26:87]] == [i / 100 for i in range(61)]
    assert all(value(u) is None for u in out[:26])
    out = h.text_typed("alpha")(FLUX_LABEL, ALPHA, ",".join(["1"] * 26))  # an SD string on Flux: the error
    assert "has 26 values but Flux.1 takes 61 values" in out[87]
    a, _, note = h.fill_random("R: uniform 0..1", FLUX_LABEL, ALPHA)
    assert a == ",".join(["R"] * 61) and "61 random" in note
    choices = h.preset_choices(FLUX_LABEL)["choices"]
    assert "FLUXALL" in choices and "GRAD_V" not in choices
    status, dd = h.save_preset("MY_FLUX", FLUX_LABEL, ALPHA, text, "")
    assert "61 values for Flux.1" in status and "MY_FLUX" in dd["choices"]
    a, b, *rest = h.preset_picked("MY_FLUX", FLUX_LABEL, ALPHA)
    assert a == "MY_FLUX" and [value(u) for u in rest[26:87]] == [i / 100 for i in range(61)]


def test_flux_merge_from_the_tab_uses_the_slider_weights(models, state, monkeypatch):
    import torch
    from safetensors.torch import load_file

    from tests.flux_synth import write_flux
    monkeypatch.setattr(gr, "Warning", lambda *a, **k: None)
    a, b = write_flux(models / "fa.safetensors", 1), write_flux(models / "fb.safetensors", 2)
    h = Handlers(StandaloneHost(str(models)), state)
    text, _, _ = h.slider_released(FLUX_LABEL, ALPHA, *([0.0] * 26 + [round(0.9 - i / 100, 2) for i in range(61)]))
    form = FormValues(model_a="fa.safetensors", model_b="fb.safetensors", alpha_blocks=text, dtype="fp32", name="fm")
    status, recipe, _ = h.merge_save(lambda f, desc=None: None, *form.to_ui())
    assert status.startswith("✓ Saved"), status
    got = load_file(str(models / "fm.safetensors"))
    # weight of slot i is 0.9 - i/100: CLIP 0.9, T5 0.89, IN 0.88, D07 = slot 10, S20 = slot 42, OUT = slot 60
    for key, w in (("text_encoders.clip_l.transformer.text_model.final_layer_norm.weight", 0.9),
                   ("text_encoders.t5xxl.transformer.encoder.final_layer_norm.weight", 0.89),
                   ("model.diffusion_model.img_in.weight", 0.88),
                   ("model.diffusion_model.double_blocks.7.txt_mlp.0.weight", 0.8),
                   ("model.diffusion_model.single_blocks.20.linear1.weight", 0.48),
                   ("model.diffusion_model.final_layer.linear.weight", 0.3)):
        want = a[key].double() * (1 - w) + b[key].double() * w
        assert torch.allclose(got[key].double(), want, atol=1e-6), key
    assert torch.equal(got["vae.decoder.conv_in.weight"], a["vae.decoder.conv_in.weight"].float())  # VAE not merged
