"""The REST API's routes: plain functions over the webui double, and through FastAPI when it is installed."""
from __future__ import annotations

import json
import os

import pytest
from safetensors import safe_open

from lib_merge.errors import MergeError
from lib_merge.io.hashing import NoCache, sha256_file
from tests.webui_double.fixtures import a1111_fixture, forge_fixture, webui_fixture  # noqa: F401  (fixtures)


def deps(w):
    from lib_merge.webui.api import webui_deps
    d = webui_deps()
    d.hash_cache = NoCache()
    return d


def models(w):
    w.add_checkpoint("A.safetensors", seed=1)
    w.add_checkpoint("B.safetensors", seed=2)
    w.load("A.safetensors")


def test_merge_writes_a_file_and_returns_its_hashes(webui):
    from lib_merge.webui.api import merge_route
    models(webui)
    lock = __import__("modules.call_queue", fromlist=["x"]).queue_lock
    taken = lock.acquired
    out = merge_route({"recipe": {"models": ["A", "B.safetensors"], "alpha": 0.3, "alpha_blocks": "GRAD_V"},
                       "output": "mix"}, deps(webui))
    assert out["output"] == os.path.join(webui.models_dir, "mix.safetensors") and os.path.isfile(out["output"])
    assert out["sha256"] == sha256_file(out["output"]) and len(out["model_hashes"]) == 2
    assert out["architecture"] == "sd1" and lock.acquired == taken + 1
    with safe_open(out["output"], "pt") as f:
        recipe = json.loads(f.metadata()["sd_merge_recipe"])
    assert recipe["models"] == ["A.safetensors", "B.safetensors"] and recipe["alpha_blocks"]
    assert ("list_models",) in webui.sd_models.calls  # the new file is listed right away
    assert "mix.safetensors" in [i.name for i in webui.sd_models.checkpoints_list.values()]


@pytest.mark.parametrize("body,message", [
    ({"recipe": {"models": ["A", "nope"]}}, "checkpoint 'nope' is not in the webui's list"),
    ({"recipe": {"models": []}}, "the recipe has no models"),
    ({"recipe": {"models": ["A", "B"], "alpha_blocks": "1,2,3"}}, "--alpha-blocks has 3 values"),
    ({"recipe": {"models": ["A", "B"], "colour": 1}}, "unknown recipe field(s): colour"),
    ({"recipe": {"models": ["A", "B"]}, "output": "../evil"}, "is not a plain file name"),
    ({"models": ["A", "B"], "output": "A.safetensors"}, "exists already"),
])
def test_merge_mistakes_are_one_line_messages(a1111, body, message):
    from lib_merge.webui.api import merge_route
    models(a1111)
    with pytest.raises(MergeError) as e:
        merge_route(body, deps(a1111))
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("recipe,says,field", [
    ({"alpha_blocks": "1,2,3"}, '"alpha_blocks" has 3 values', "alpha_blocks"),
    ({"alpha_blocks": "GRAD_Q"}, "GET /blockmerge/v1/presets", None),
    ({"beta_blocks": "1,2"}, '"beta_blocks" has 2 values', "beta_blocks"),
    ({"include": "IN00", "exclude": "OUT00"}, '"include" and "exclude" were both given', "include"),
    ({"alpha": 50}, 'send "allow_extreme": true', "allow_extreme"),  # a core error added after the table
])
def test_rest_errors_speak_json_not_cli(a1111, recipe, says, field):
    """The same error as the CLI's, worded with the request's own field names and endpoints."""
    from lib_merge.webui.api import error_body, merge_route
    models(a1111)
    with pytest.raises(MergeError) as e:
        merge_route({"recipe": {"models": ["A", "B"], **recipe}}, deps(a1111))
    body = error_body(e.value)
    assert says in body["error"], body
    assert "--" not in body["error"] and "python -m" not in body["error"]
    assert (field in body["fields"]) if field else True


def test_presets_lists_merge_and_lora_presets(a1111, tmp_path):
    from lib_merge.webui.api import presets_route
    lbw = tmp_path / "lbw.txt"
    lbw.write_text("MINE:1,1,1,1,1,1,1,0,0,0,0,0,0,0,0,0,0\n")
    a1111.shared.opts.data["blockmerge_lbw_presets"] = str(lbw)
    out = presets_route(deps(a1111))
    assert len(out["merge"]["sd"]["GRAD_V"].split(",")) == 26 and len(out["merge"]["sdxl"]["GRAD_V_XL"].split(",")) == 20
    assert out["lora"]["NONE"]["sd"] == ",".join(["0"] * 26) and out["lora"]["MINE"] == {"sd": "1,1,1,1,1,1,1,0,0,0,0,0,0,0,0,0,0"}
    assert out["lora_elemental"]["ATTNDEEPOFF"] == "IN05-OUT05:attn:0"


def test_parse_tag_gives_per_block_strengths(a1111):
    from lib_merge.webui.api import parse_tag_route
    out = parse_tag_route({"tag": "<lora:x:0.5:1:lbw=OUTS>", "arch": "sdxl"}, deps(a1111))
    assert out["arch"] == "sdxl" and out["blocks"]["OUT08"] == 1 and out["blocks"]["IN04"] == 0
    assert out["strengths"]["BASE"] == 0.5 and len(out["layouts"]["12"]) == 12
    a1111.add_checkpoint("X.safetensors", "sdxl", seed=1)
    a1111.load("X.safetensors")
    assert parse_tag_route({"tag": "<lora:x:1>"}, deps(a1111))["arch"] == "sdxl"  # the loaded model's
    with pytest.raises(MergeError, match="unknown preset 'NOPE'"):
        parse_tag_route({"tag": "<lora:x:1:1:lbw=NOPE>"}, deps(a1111))


def test_fastapi_routes(a1111):
    fastapi = pytest.importorskip("fastapi")
    testclient = pytest.importorskip("fastapi.testclient")
    from lib_merge.webui.api import register
    models(a1111)
    app = fastapi.FastAPI()
    a1111.load_scripts()
    a1111.script_callbacks.app_started_callback(None, app)  # what the webui does at start-up
    client = testclient.TestClient(app)
    r = client.post("/blockmerge/v1/merge", json={"recipe": {"models": ["A", "B"], "alpha": 0.5}, "output": "m"})
    assert r.status_code == 200 and r.json()["output"].endswith("m.safetensors")
    r = client.post("/blockmerge/v1/merge", json={"recipe": {"models": ["A", "B"], "alpha_blocks": "nope"}})
    assert r.status_code == 400 and "nope" in r.json()["error"] and "--" not in r.json()["error"]
    assert r.json()["fields"] == ["alpha_blocks"]
    assert client.get("/blockmerge/v1/presets").status_code == 200
    r = client.post("/blockmerge/v1/parse-tag", json={"tag": "<lora:x:1:1:lbw=12,3>"})
    assert r.status_code == 400 and "2 block weights" in r.json()["error"]
    assert register  # the callback goes through register()


def test_merge_route_takes_flux_models(webui):
    from lib_merge.io.safetensors_io import save_tensors
    from lib_merge.webui.api import merge_route
    from tests.test_flux import _tiny
    for n, seed in (("FA", 1), ("FB", 2)):
        save_tensors(os.path.join(webui.models_dir, f"{n}.safetensors"), _tiny(seed))
    webui.sd_models.list_models()
    out = merge_route({"recipe": {"models": ["FA", "FB"], "alpha_blocks": "FLUXALL", "dtype": "fp8_e4m3fn"},
                       "output": "fluxmix"}, deps(webui))
    assert out["architecture"] == "flux-3x4" and os.path.isfile(out["output"])
    with pytest.raises(MergeError, match="has 26 values but Flux.1 .* takes 11 values"):
        merge_route({"recipe": {"models": ["FA", "FB"], "alpha_blocks": ",".join(["1"] * 26)}}, deps(webui))
