"""Every event of the tabs driven through Gradio's own processing path (`Blocks.process_api`: the
real preprocess, the handler, the real postprocess of each output component), under whatever gradio
is installed; .ci/ui_check.sh runs it under 3.41.2 (A1111) and 4.40.0 (Forge).

A handler that hands a one-output event a one-item list, a Markdown a list, or a Dropdown an update
it cannot take fails here exactly as it fails in the browser ("Error" badge, HTTP 500).
"""
from __future__ import annotations

import asyncio

import pytest

gr = pytest.importorskip("gradio")

from lib_merge.ui import compat, labels  # noqa: E402
from lib_merge.ui.lbw_accordion import build_lbw_inputs  # noqa: E402
from lib_merge.ui.standalone import StandaloneHost, build_app  # noqa: E402
from lib_merge.ui.state import TabState  # noqa: E402
from tests.test_ui_build import WebuiLikeHost, models  # noqa: E402,F401  (the same host and models fixture)


@pytest.fixture(autouse=True)
def quiet_toasts(monkeypatch):
    monkeypatch.setattr(gr, "Warning", lambda *a, **k: None)


# --- Gradio's own path, 3.41 and 4.x ----------------------------------------------------------------

def _deps(demo) -> list[dict]:
    return demo.get_config_file()["dependencies"]


def _targets(dep: dict) -> list[tuple[int, str]]:
    """(component id, event name) pairs: 4.x lists pairs, 3.41 ids plus one `trigger`."""
    out = []
    for t in dep["targets"]:
        out.append((t[0], t[1]) if isinstance(t, (list, tuple)) else (t, dep.get("trigger")))
    return out


def _frontend_values(demo) -> dict[int, object]:
    """What the browser holds for each component when the page loads: the config's values."""
    return {c["id"]: c.get("props", {}).get("value") for c in demo.get_config_file()["components"]}


def process(demo, index: int, inputs: list) -> list:
    """Run dependency `index` as the server does for a request: preprocess, call, postprocess."""
    async def run():
        if compat.GRADIO4:
            from gradio.state_holder import SessionState
            fns = demo.fns
            block_fn = fns[index] if isinstance(fns, dict) else fns[index]
            return await demo.process_api(block_fn=block_fn, inputs=inputs, state=SessionState(demo))
        return await demo.process_api(fn_index=index, inputs=inputs, state={})
    if not compat.GRADIO4 and getattr(demo, "_queue", None) is None:
        demo.queue()  # as the webui runs it: handlers with a Progress need the queue
    return asyncio.run(run())["data"]


def fire(demo, component, event: str, values: dict[int, object] | None = None) -> list[list]:
    """Fire `event` of `component` with the page's current values (overridden by `values`, keyed by
    component); the data of every dependency it triggers, in order."""
    current = _frontend_values(demo)
    for comp, v in (values or {}).items():
        current[comp._id] = v
    results = []
    for i, dep in enumerate(_deps(demo)):
        if (component._id, event) in _targets(dep):
            results.append(process(demo, i, [current.get(cid) for cid in dep["inputs"]]))
    assert results, f"no {event} event on {component}"
    return results


def _choices(update) -> list[str]:
    assert isinstance(update, dict), update
    return [c[0] if isinstance(c, (list, tuple)) else c for c in update["choices"]]


def _value(update):
    return update.get("value") if isinstance(update, dict) else update


# --- every event, page defaults ------------------------------------------------------------------------

def _every_event(demo) -> int:
    values = _frontend_values(demo)
    n = 0
    for i, dep in enumerate(_deps(demo)):
        if dep.get("backend_fn") is False:  # a pure front-end (js) event: no server handler
            continue
        data = process(demo, i, [values.get(cid) for cid in dep["inputs"]])
        assert len(data) == len(dep["outputs"]), (i, _targets(dep))
        n += 1
    return n


@pytest.mark.parametrize("host_cls", [StandaloneHost, WebuiLikeHost])
def test_every_event_of_the_merge_tab_passes_gradios_processing(models, tmp_path, host_cls):
    demo = build_app(host_cls(str(models)), TabState(data_dir=str(tmp_path / "data")))
    assert _every_event(demo) > 40


def test_every_event_of_the_lora_accordion_passes_gradios_processing():
    from tests.test_webui_ui import Files
    with gr.Blocks(analytics_enabled=False) as demo:
        build_lbw_inputs(Files(), tab="txt2img")
    assert _every_event(demo) >= 8


# --- the faults a user saw as an "Error" badge ---------------------------------------------------------

@pytest.fixture
def tab(models, tmp_path):
    host = WebuiLikeHost(str(models))
    demo = build_app(host, TabState(data_dir=str(tmp_path / "data")))
    ids = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    return demo, ids


def test_restore_and_stop_answer_a_status_line(tab):
    demo, ids = tab
    (restore,) = fire(demo, ids["blockmerge_restore"], "click")
    assert isinstance(restore[0], str) and restore[0]
    (stop,) = fire(demo, ids["blockmerge_stop"], "click")
    assert stop == ["Nothing is running."]


def test_history_refresh_lists_past_merges(tab):
    demo, ids = tab
    model_a, model_b = ids["blockmerge_model_a"], ids["blockmerge_model_b"]
    name = ids["blockmerge_name"] if "blockmerge_name" in ids else None
    values = {model_a: "A.safetensors", model_b: "B.safetensors"}
    if name is not None:
        values[name] = "history_probe"
    fire(demo, ids["blockmerge_merge_save"], "click", values)
    (refreshed,) = fire(demo, ids["blockmerge_history_refresh"], "click")
    assert len(refreshed) == 1 and len(_choices(refreshed[0])) == 1


def test_sdxl_layout_offers_sdxl_presets(tab):
    demo, ids = tab
    arch = ids["blockmerge_arch"]
    results = fire(demo, arch, "change", {arch: labels.ARCH_LABELS["sdxl"]})
    preset_updates = [r[0] for r in results if len(r) == 1]
    assert len(preset_updates) == 1, results
    names = _choices(preset_updates[0])
    assert "GRAD_V" in names and any(n.endswith("_XL") for n in names)  # `_XL` presets exist only on SDXL


def test_train_difference_sets_add_difference_mode(tab):
    demo, ids = tab
    calc = ids["blockmerge_calc"]
    (out,) = fire(demo, calc, "change", {calc: labels.CALC_LABELS["train_difference"]})
    assert _value(out[0]) == labels.MODE_LABELS["add_difference"]


# --- Flux.1: the 61 sliders through Gradio's processing -------------------------------------------------

def test_flux_model_a_shows_the_flux_sliders_and_presets(models, tmp_path):
    from tests.flux_synth import write_flux
    write_flux(models / "flux.safetensors", 1)
    demo = build_app(WebuiLikeHost(str(models)), TabState(data_dir=str(tmp_path / "data")))
    ids = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    arch, model_a = ids["blockmerge_arch"], ids["blockmerge_model_a"]
    # model A's change also lists the key maps next to it (issue 14): the arch detection is the one with the note
    (detected,) = [r for r in fire(demo, model_a, "change", {model_a: "flux.safetensors"}) if "Flux.1" in str(r[1])]
    assert _value(detected[0]) == labels.ARCH_LABELS["flux"] and "Flux.1 dev" in detected[1]
    results = fire(demo, arch, "change", {arch: labels.ARCH_LABELS["flux"]})
    rows = [r for r in results if len(r) == 2]
    assert len(rows) == 1 and [u.get("visible") for u in rows[0]] == [False, True]
    (presets,) = [r[0] for r in results if len(r) == 1]
    assert "FLUXALL" in _choices(presets) and "GRAD_V" not in _choices(presets)
    (sliders,) = [r for r in results if len(r) == 26 + 61 + 1]
    assert [u.get("visible") for u in sliders[26:87]] == [True] * 61
    # FLUXALL typed in the alpha field moves the 61 sliders to 1
    alpha = ids["blockmerge_alpha_blocks"]
    (typed,) = fire(demo, alpha, "input", {alpha: "FLUXALL", arch: labels.ARCH_LABELS["flux"]})
    assert [_value(u) for u in typed[26:87]] == [1] * 61 and "61 values for Flux.1" in typed[87]
    # releasing a Flux slider writes the 61-value string
    d07 = ids["blockmerge_mbw_D07"]
    (released,) = fire(demo, d07, "release", {d07: 0.25, arch: labels.ARCH_LABELS["flux"]})
    parts = released[0].split(",")
    assert len(parts) == 61 and parts[3 + 7] == "0.25" and parts[0] == "0.5"


# --- Compare section and key map picker (issue 14) -------------------------------------------------------

def test_compare_section_shows_heatmap_and_table(tab):
    demo, ids = tab
    run = ids["blockmerge_compare_run"]
    (out,) = fire(demo, run, "click", {ids["blockmerge_model_a"]: "A.safetensors",
                                       ids["blockmerge_model_b"]: "B.safetensors"})
    status, image, table = out
    assert status.startswith("✓ Compared A.safetensors, B.safetensors"), status
    assert image, image  # 3.41: a data URL; 4.x: a file payload
    assert "A vs B: cosine similarity" in table and "IN04" in table
    (out,) = fire(demo, run, "click", {ids["blockmerge_model_a"]: "A.safetensors",
                                       ids["blockmerge_model_b"]: "xl/XL.safetensors"})
    assert "is SDXL but A.safetensors (A) is SD1.x" in out[0] and "Fix:" in out[0]
    (out,) = fire(demo, run, "click", {ids["blockmerge_model_a"]: "A.safetensors"})
    assert "compare needs model A and model B" in out[0]


def test_key_map_picker_lists_maps_and_merges_through_one(tmp_path):
    import json
    import os

    import torch

    from lib_merge.cli import main
    from lib_merge.io.safetensors_io import SafetensorsReader, save_tensors
    from tests import synth
    from tests.test_keymap import prune
    from tests.test_ui_build import WebuiLikeHost
    d = tmp_path / "maps"
    d.mkdir()
    base = synth.state_dict("sdxl", seed=3)
    g = torch.Generator().manual_seed(9)
    tune = {k: (v.float() + 0.1 * torch.randn(v.shape, generator=g)).to(v.dtype) if v.is_floating_point() else v
            for k, v in base.items()}
    for name, sd in (("pruned", prune(base)), ("tune", tune), ("base", base)):
        save_tensors(str(d / f"{name}.safetensors"), sd)
    assert main(["map", str(d / "pruned.safetensors"), str(d / "base.safetensors"), "-o", str(d / "ssd.json")]) == 0
    (d / "other.json").write_text('{"not": "a map"}')
    demo = build_app(WebuiLikeHost(str(d)), TabState(data_dir=str(tmp_path / "data")))
    ids = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    results = fire(demo, ids["blockmerge_model_a"], "change", {ids["blockmerge_model_a"]: "pruned.safetensors"})
    picked = [r for r in results if len(r) == 2 and isinstance(r[0], dict) and "choices" in r[0]]
    assert len(picked) == 1 and _choices(picked[0][0]) == ["ssd.json"] and "1 key map" in picked[0][1]
    form = {ids["blockmerge_model_a"]: "pruned.safetensors", ids["blockmerge_model_b"]: "tune.safetensors",
            ids["blockmerge_model_c"]: "base.safetensors", ids["blockmerge_mode"]: labels.MODE_LABELS["add_difference"],
            ids["blockmerge_name"]: "through_map"}
    (out,) = fire(demo, ids["blockmerge_merge_save"], "click", form)  # without the map: refused, in tab words
    assert "transformer layers" in out[0] and "key map" in out[0] and "--key-map" not in out[0]
    (out,) = fire(demo, ids["blockmerge_merge_save"], "click", {**form, ids["blockmerge_key_map"]: "ssd.json"})
    assert out[0].startswith("✓"), out[0]
    with SafetensorsReader(os.path.join(str(d), "through_map.safetensors")) as r:
        rec = json.loads(r.metadata["sd_merge_recipe"])
    assert rec["key_map"] == "ssd.json" and len(rec["key_map_sha256"]) == 64


def test_compare_goes_through_the_picked_key_map(tmp_path):
    """Compare a pruned SDXL with the model it was pruned from (kept layers unchanged): by name the
    shifted layers differ and the note says to pick a key map, in the tab's words; through the picked
    map every layer is the one it came from, so every cosine in the table is 1.0000."""
    from lib_merge.cli import main
    from lib_merge.io.safetensors_io import save_tensors
    from tests import synth
    from tests.test_keymap import prune
    from tests.test_ui_build import WebuiLikeHost
    d = tmp_path / "maps"
    d.mkdir()
    base = synth.state_dict("sdxl", seed=3)
    for name, sd in (("pruned", prune(base, noise=0.0)), ("base", base)):
        save_tensors(str(d / f"{name}.safetensors"), sd)
    assert main(["map", str(d / "pruned.safetensors"), str(d / "base.safetensors"), "-o", str(d / "ssd.json")]) == 0
    demo = build_app(WebuiLikeHost(str(d)), TabState(data_dir=str(tmp_path / "data")))
    ids = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    form = {ids["blockmerge_model_a"]: "pruned.safetensors", ids["blockmerge_model_b"]: "base.safetensors"}
    (out,) = fire(demo, ids["blockmerge_compare_run"], "click", form)
    status, _, table = out
    assert status.startswith("✓") and "transformer layers" in status and "pick a map in Key map" in status, status
    assert "--key-map" not in status
    cosines = _cosine_cells(table)
    assert cosines and min(cosines) < 0.99, table
    (out,) = fire(demo, ids["blockmerge_compare_run"], "click", {**form, ids["blockmerge_key_map"]: "ssd.json"})
    status, _, table = out
    assert status.startswith("✓") and "transformer layers" not in status, status
    cosines = _cosine_cells(table)
    assert len(cosines) > 50 and all(c == 1.0 for c in cosines), table
    (out,) = fire(demo, ids["blockmerge_compare_run"], "click", {**form, ids["blockmerge_key_map"]: "gone.json"})
    assert "gone.json not found" in out[0] and "Fix:" in out[0], out[0]


def _cosine_cells(table: str) -> list[float]:
    """The numbers of the table's "A vs B: cosine similarity" section (a header line, then one row
    per block, up to the first blank line)."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("A vs B: cosine similarity"))
    out = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        out += [float(x) for x in line.split()[1:] if x != "-"]
    return out
