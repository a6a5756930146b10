"""The REST merge's `sha256` of its output comes from the bytes as they were written, not from
reading the new file again; expected digests are hashlib.sha256 of the file read back here."""
from __future__ import annotations

import hashlib
import io
import os

import pytest
import torch

from lib_merge.io import hashing
from lib_merge.io.hashing import HashCache, NoCache
from lib_merge.io.safetensors_io import SafetensorsWriter
from tests.webui_double.fixtures import a1111_fixture, forge_fixture, webui_fixture  # noqa: F401  (fixtures)


def file_sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def deps(w, cache):
    from lib_merge.webui.api import webui_deps
    d = webui_deps()
    d.hash_cache = cache
    return d


def sd_models(w):
    w.add_checkpoint("A.safetensors", seed=1)
    w.add_checkpoint("B.safetensors", seed=2)
    w.load("A.safetensors")
    return ["A", "B"]


def flux_models(w):
    from lib_merge.io.safetensors_io import save_tensors
    from tests.test_flux import _tiny
    for n, seed in (("FA", 1), ("FB", 2)):
        save_tensors(os.path.join(w.models_dir, f"{n}.safetensors"), _tiny(seed))
    w.sd_models.list_models()
    return ["FA", "FB"]


def primed(w, tmp_path, names):
    """A hash cache that knows the inputs, as the webui's does for checkpoints it has hashed."""
    cache = HashCache(str(tmp_path / "hashes.json"))
    for n in names:
        cache.sha256(os.path.join(w.models_dir, f"{n}.safetensors"))
    return cache


def no_rehash_of(monkeypatch, path):
    real = hashing.sha256_file

    def guard(p, progress=None):
        if os.path.abspath(p) == os.path.abspath(path):
            raise AssertionError(f"the output {p} was read again to hash it")
        return real(p, progress)
    monkeypatch.setattr(hashing, "sha256_file", guard)


@pytest.mark.parametrize("make,extra", [
    (sd_models, {"alpha": 0.3, "alpha_blocks": "GRAD_V"}),
    (sd_models, {"alpha": 0.7, "dtype": "fp16"}),
    (flux_models, {"alpha_blocks": "FLUXALL", "dtype": "fp8_e4m3fn"}),
])
def test_rest_merge_hashes_the_output_as_written(webui, tmp_path, monkeypatch, make, extra):
    from lib_merge.webui.api import merge_route
    names = make(webui)
    cache = primed(webui, tmp_path, names)
    target = os.path.join(webui.models_dir, "mix.safetensors")
    no_rehash_of(monkeypatch, target)
    out = merge_route({"recipe": {"models": names, **extra}, "output": "mix"}, deps(webui, cache))
    assert out["output"] == target
    assert out["sha256"] == file_sha(target)
    assert cache.lookup(target) == out["sha256"]  # in the cache (and the webui's) as if hashed from the file


def test_without_known_input_digests_the_answer_is_still_the_files(webui, tmp_path):
    """An input hashed from the merge's own reads makes the header be rewritten last: the route
    hashes the file then, and the file's bytes are the same either way."""
    from lib_merge.webui.api import merge_route
    names = sd_models(webui)
    recipe = {"models": names, "alpha": 0.4, "alpha_blocks": "GRAD_V"}
    cold = merge_route({"recipe": recipe, "output": "cold"}, deps(webui, NoCache()))
    warm = merge_route({"recipe": recipe, "output": "warm"}, deps(webui, primed(webui, tmp_path, names)))
    assert cold["sha256"] == file_sha(cold["output"])
    assert warm["sha256"] == file_sha(warm["output"]) == cold["sha256"]
    assert cold["model_hashes"] == warm["model_hashes"]


def test_writer_digest_and_header_rewrite():
    entries = [("a", "F32", (3,)), ("b", "F16", (2, 2))]
    a, b = torch.arange(3, dtype=torch.float32), torch.ones(2, 2, dtype=torch.float16)
    for new_meta, kept in (({"k": "v"}, True), ({"k": "w"}, False)):
        buf = io.BytesIO()
        w = SafetensorsWriter(buf, entries, {"k": "v"}, 256, hash_output=True)
        w.write("a", a)
        assert w.sha256() is None  # incomplete
        w.write("b", b)
        w.finish()
        w.rewrite_metadata(new_meta)
        want = hashlib.sha256(buf.getvalue()).hexdigest()
        assert w.sha256() == (want if kept else None)
    plain = SafetensorsWriter(io.BytesIO(), entries[:1], None)
    plain.write("a", a)
    assert plain.sha256() is None  # not asked for


def test_the_webui_gets_the_new_checkpoints_digest_and_does_not_hash_it_on_load(webui, monkeypatch):
    """Inputs the webui has hashed (so the digest comes from the writer): the new checkpoint's sha256
    lands in the webui's own cache under its title (seen missing in a real A1111 1.10.1 before), so the
    webui's `sha256()` on loading it answers from the cache instead of reading the file."""
    import json
    from lib_merge.webui.api import merge_route, webui_deps
    names = sd_models(webui)
    hashes = __import__("modules.hashes", fromlist=["x"])
    for n in names:  # the webui hashed both inputs itself (it does when it loads or lists them)
        p = os.path.join(webui.models_dir, f"{n}.safetensors")
        hashes.sha256(p, f"checkpoint/{n}.safetensors")
    target = os.path.join(webui.models_dir, "mix.safetensors")
    no_rehash_of(monkeypatch, target)
    out = merge_route({"recipe": {"models": names, "alpha": 0.3, "alpha_blocks": "GRAD_V"}, "output": "mix"},
                      webui_deps())
    assert out["sha256"] == file_sha(target)
    with open(os.path.join(webui.tmp, "cache.json"), encoding="utf8") as f:
        saved = json.load(f)["hashes"]
    assert saved["checkpoint/mix.safetensors"] == {"mtime": os.path.getmtime(target), "sha256": out["sha256"]}
    before = list(hashes.computed)
    assert hashes.sha256(target, "checkpoint/mix.safetensors") == out["sha256"]
    assert hashes.computed == before  # answered from the cache: the file was not read
