"""REST: POST /blockmerge/v1/compare, and the merge route's "key_map" field (pruned SDXL)."""
from __future__ import annotations

import base64
import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from lib_merge.cli import main
from lib_merge.errors import MergeError
from lib_merge.io.safetensors_io import SafetensorsReader, save_tensors
from tests import synth
from tests.test_keymap import prune
from tests.test_webui_api import deps
from tests.webui_double.fixtures import a1111_fixture, forge_fixture, webui_fixture  # noqa: F401  (fixtures)


def _pair(w):
    a = w.add_checkpoint("A.safetensors", seed=1)
    g = torch.Generator().manual_seed(2)
    b = {k: (v + 0.1 * torch.randn(v.shape, generator=g)) if v.is_floating_point() else v for k, v in a.items()}
    save_tensors(os.path.join(w.models_dir, "B.safetensors"), b)
    w.sd_models.list_models()
    return a, b


def test_compare_route_gives_the_numbers_and_a_png(webui):
    from lib_merge.webui.api import compare_route
    a, b = _pair(webui)
    out = compare_route({"models": ["A", "B.safetensors"]}, deps(webui))
    assert out["format"] == "blockmerge-compare" and out["architecture"] == "sd1"
    keys = [k for k in a if k.startswith("model.diffusion_model.input_blocks.4.1.transformer_blocks.")
            and ".attn2." in k]
    x = np.concatenate([a[k].double().numpy().ravel() for k in keys])
    y = np.concatenate([b[k].double().numpy().ravel() for k in keys])
    want = float(x @ y / np.sqrt((x @ x) * (y @ y)))
    assert out["pairs"]["A vs B"]["cells"]["IN04"]["attn2"]["cosine"] == pytest.approx(want, abs=1e-7)
    img = Image.open(io.BytesIO(base64.b64decode(out["heatmap_png"])))
    assert img.format == "PNG" and img.size[0] > 400 and img.size[1] > 300
    assert "heatmap_png" not in compare_route({"models": ["A", "B"], "heatmap": False}, deps(webui))
    json.dumps(out, allow_nan=False)  # plain JSON, no NaN


@pytest.mark.parametrize("body,says,fields", [
    ({"models": ["A"]}, '"models" needs 2 or 3 checkpoints', ["models"]),
    ({"models": "A,B"}, '"models" needs 2 or 3 checkpoints', ["models"]),
    ({"models": ["A", "nope"]}, "checkpoint 'nope' is not in the webui's list", ["models"]),
    ({"models": ["A", "X"]}, "X.safetensors (B) is SDXL but A.safetensors (A) is SD1.x", ["models"]),
    ({"models": ["A", "B"], "heatmap": "yes"}, '"heatmap" is not true or false', ["heatmap"]),
    ({"models": ["A", "B"], "colour": 1}, "unknown field(s): colour", ["colour"]),
])
def test_compare_route_errors_name_the_field(a1111, body, says, fields):
    from lib_merge.webui.api import compare_route, error_body
    _pair(a1111)
    a1111.add_checkpoint("X.safetensors", arch="sdxl", seed=3)
    with pytest.raises(MergeError) as e:
        compare_route(body, deps(a1111))
    err = error_body(e.value)
    assert says in err["error"] and err["fields"] == fields and "\n" not in err["error"] and "Fix:" in err["error"]


def test_fastapi_compare_endpoint(a1111):
    fastapi = pytest.importorskip("fastapi")
    testclient = pytest.importorskip("fastapi.testclient")
    _pair(a1111)
    app = fastapi.FastAPI()
    a1111.load_scripts()
    a1111.script_callbacks.app_started_callback(None, app)
    client = testclient.TestClient(app)
    r = client.post("/blockmerge/v1/compare", json={"models": ["A", "B"], "heatmap": False})
    assert r.status_code == 200 and r.json()["pairs"]["A vs B"]["total"]["cosine"] > 0.9
    r = client.post("/blockmerge/v1/compare", json={"models": ["A"]})
    assert r.status_code == 400 and r.json()["fields"] == ["models"]


def test_merge_route_key_map_field(webui, capsys):
    """A pruned SDXL merged through a map file named in "key_map" (found next to the models)."""
    from lib_merge.webui.api import error_body, merge_route
    base = synth.state_dict("sdxl", seed=3, dtype=torch.float32)
    g = torch.Generator().manual_seed(9)
    tune = {k: (v + 0.1 * torch.randn(v.shape, generator=g)) if v.is_floating_point() else v for k, v in base.items()}
    d = webui.models_dir
    for name, sd in (("pruned", prune(base)), ("tune", tune), ("base", base)):
        save_tensors(os.path.join(d, f"{name}.safetensors"), sd)
    webui.sd_models.list_models()
    assert main(["map", os.path.join(d, "pruned.safetensors"), os.path.join(d, "base.safetensors"),
                 "-o", os.path.join(d, "ssd.map.json")]) == 0
    capsys.readouterr()
    recipe = {"models": ["pruned", "tune", "base"], "mode": "add_difference", "alpha": 1.3}
    with pytest.raises(MergeError) as e:  # without the map: refused, the field named
        merge_route({"recipe": recipe, "output": "x"}, deps(webui))
    err = error_body(e.value)
    assert "transformer layers" in err["error"] and err["fields"] == ["key_map"] and '"key_map"' in err["error"]
    with pytest.raises(MergeError) as e:
        merge_route({"recipe": {**recipe, "key_map": "nope.json"}, "output": "x"}, deps(webui))
    err = error_body(e.value)
    assert '"key_map" nope.json not found' in err["error"] and err["fields"] == ["key_map"]
    out = merge_route({"recipe": {**recipe, "key_map": "ssd.map.json"}, "output": "through"}, deps(webui))
    with SafetensorsReader(out["output"]) as r:
        rec = json.loads(r.metadata["sd_merge_recipe"])
    assert rec["key_map"] == "ssd.map.json" and len(rec["key_map_sha256"]) == 64


def test_compare_route_key_map_field(webui, capsys):
    """A pruned SDXL compared with the model it was pruned from: by name, the shifted layers differ
    (and a note says to pass "key_map"); through the map every layer is the one it came from, so every
    cell's cosine is 1. A map that is not there is an error about "key_map"."""
    from lib_merge.webui.api import compare_route, error_body
    base = synth.state_dict("sdxl", seed=3, dtype=torch.float32)
    d = webui.models_dir
    for name, sd in (("pruned", prune(base, noise=0.0)), ("base", base)):  # kept layers exactly as they were
        save_tensors(os.path.join(d, f"{name}.safetensors"), sd)
    webui.sd_models.list_models()
    assert main(["map", os.path.join(d, "pruned.safetensors"), os.path.join(d, "base.safetensors"),
                 "-o", os.path.join(d, "ssd.map.json")]) == 0
    capsys.readouterr()
    by_name = compare_route({"models": ["pruned", "base"], "heatmap": False}, deps(webui))
    assert any('"key_map"' in n and "--key-map" not in n for n in by_name["notes"]), by_name["notes"]
    cos = [c["cosine"] for row in by_name["pairs"]["A vs B"]["cells"].values() for c in row.values()]
    assert min(cos) < 0.99  # same names, other layers
    mapped = compare_route({"models": ["pruned", "base"], "heatmap": False, "key_map": "ssd.map.json"}, deps(webui))
    assert not any("key_map" in n for n in mapped["notes"])
    cells = mapped["pairs"]["A vs B"]["cells"]
    cos = [c["cosine"] for row in cells.values() for c in row.values()]
    assert cos and all(v == pytest.approx(1.0, abs=1e-6) for v in cos)
    with pytest.raises(MergeError) as e:
        compare_route({"models": ["pruned", "base"], "key_map": "nope.json"}, deps(webui))
    err = error_body(e.value)
    assert '"key_map" nope.json not found' in err["error"] and err["fields"] == ["key_map"] and "Fix:" in err["error"]
